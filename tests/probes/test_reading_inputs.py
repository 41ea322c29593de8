"""Listing and reading image folders when the folder is odd: strays, links, FIFOs, huge images."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from wmprobe.errors import BadImageError, ImageFolderError
from wmprobe.mitigation.downstream import scan_image_folder
from wmprobe.probes.images import KNOWN_WATERMARKED, load_frame, scan_folder


def _save(path, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path)


def test_a_stray_file_does_not_bring_the_watermarked_samples_back(tmp_path):
    _save(tmp_path / "n01440764_tench.JPEG")
    for name in KNOWN_WATERMARKED:
        _save(tmp_path / f"{name}.JPEG")
    _save(tmp_path / "stray.jpg")  # no wnid: the folder is no longer all ImageNet samples
    found = scan_folder(tmp_path)
    assert sorted(r.image_id for r in found.records) == ["n01440764_tench", "stray"]
    assert set(found.excluded) == set(KNOWN_WATERMARKED)
    assert all("watermark" in why for why in found.excluded.values())
    assert len(scan_folder(tmp_path, keep_watermarked=True)) == 4


def test_linked_subfolders_are_followed_and_loops_do_not_hang(tmp_path):
    outside = tmp_path / "outside"
    _save(outside / "b.png")
    root = tmp_path / "root"
    _save(root / "a.png")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)  # a link to its own parent
    found = scan_folder(root)
    assert [r.image_id for r in found.records] == ["a", "linked/b"]


def test_duplicate_image_ids_are_refused_with_both_paths(tmp_path):
    _save(tmp_path / "zz.jpg")
    _save(tmp_path / "zz.png")
    with pytest.raises(ImageFolderError, match=r"zz\.jpg.*zz\.png"):
        scan_folder(tmp_path)
    down = tmp_path / "down"
    _save(down / "cat" / "x.jpg")
    _save(down / "cat" / "x.png")
    with pytest.raises(ImageFolderError, match=r"x\.jpg.*x\.png"):
        scan_image_folder(down)


def test_downstream_class_folders_may_hold_linked_subfolders(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    _save(elsewhere / "y.png")
    down = tmp_path / "down"
    _save(down / "cat" / "x.png")
    _save(down / "dog" / "z.png")
    (down / "cat" / "more").symlink_to(elsewhere, target_is_directory=True)
    found = scan_image_folder(down)
    assert [r.image_id for r in found.records] == ["cat/more/y", "cat/x", "dog/z"]


@pytest.fixture
def _no_hang():
    """Turn a hang into a failure: SIGALRM after 30 s."""

    def fail(*_):
        raise TimeoutError("hung for 30 s")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_fifos_and_device_links_are_left_out_with_the_reason_and_never_opened(tmp_path, _no_hang):
    _save(tmp_path / "a.png")
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    found = scan_folder(tmp_path)
    assert [r.image_id for r in found.records] == ["a"]
    assert "not a regular file" in found.excluded["pipe"]
    assert "not a regular file" in found.excluded["zero"]
    # read directly, they are a BadImageError at once (no blocking open, no endless read)
    for name in ("pipe.jpg", "zero.jpg"):
        with pytest.raises(BadImageError, match="not a regular file"):
            load_frame(tmp_path / name)


def _old_frame(path, size=224):
    """The frame as wmprobe made it before crop-first: resize the whole image, then crop."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    w, h = rgb.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    resized = rgb.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return resized.crop((left, top, left + size, top + size))


@pytest.mark.parametrize(
    "size",
    [(224, 224), (300, 200), (200, 300), (500, 375), (375, 500), (640, 480), (225, 224),
     (448, 672), (1919, 1080), (96, 96), (3000, 200), (32, 500)],
)  # fmt: skip
def test_ordinary_images_give_exactly_the_frames_of_earlier_versions(tmp_path, size):
    rng = np.random.default_rng(size[0] * 7 + size[1])
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(pixels).save(path)
    new, old = np.asarray(load_frame(path)), np.asarray(_old_frame(path))
    assert new.shape == (224, 224, 3)
    assert np.array_equal(new, old)


@pytest.mark.parametrize("size", [(1000, 37), (33, 777), (5000, 60), (40, 4000), (32, 20000)])
def test_strips_are_cropped_first_and_match_up_to_rounding(tmp_path, size):
    rng = np.random.default_rng(size[0] * 7 + size[1])
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(pixels).save(path)
    new = np.asarray(load_frame(path)).astype(int)
    old = np.asarray(_old_frame(path)).astype(int)
    assert np.abs(new - old).max() <= 1
    assert (new != old).mean() < 0.01


def _png_header_only(path, width, height):
    """A PNG that declares ``width`` x ``height`` but holds one tiny (truncated) data chunk."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    )


def test_an_image_over_the_pixel_budget_is_a_skip_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    _png_header_only(path, 12000, 12000)  # 144 MP: under PIL's bomb error (179 MP), over our 128 MP
    with pytest.raises(BadImageError, match="12000x12000"):
        load_frame(path)


_PEAK = """
import sys, numpy as np
from PIL import Image
from wmprobe.probes.images import load_frame
def hwm():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM'):
            return int(line.split()[1]) // 1024
before = hwm()
frame = load_frame(sys.argv[1])
assert frame.size == (224, 224)
print(hwm() - before)
"""


@pytest.mark.slow
def test_a_32_by_100000_png_is_framed_in_bounded_memory(tmp_path):
    path = tmp_path / "long.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, size=(100_000, 32, 3), dtype=np.uint8)).save(
        path, compress_level=1
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    grown_mib = int(out.stdout.strip())
    # the decoded image is 9.2 MiB; resizing it whole to 224 px wide took ~1.6 GB
    assert grown_mib < 100, f"peak grew by {grown_mib} MiB"
