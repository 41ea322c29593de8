import numpy as np
import pytest
from PIL import Image

from wmprobe.errors import ImageFolderError
from wmprobe.probes.images import (
    KNOWN_WATERMARKED,
    imagenet_label,
    imagenet_wnids,
    load_frame,
    scan_folder,
)


def _save(path, size=(40, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)


def test_imagenet_sample_names_get_labels_and_watermarked_are_left_out(tmp_path):
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and wnids[0] == "n01440764"
    _save(tmp_path / "n01440764_tench.JPEG")
    _save(tmp_path / f"{KNOWN_WATERMARKED[0]}.JPEG")
    _save(tmp_path / f"{KNOWN_WATERMARKED[1]}.JPEG")
    found = scan_folder(tmp_path)
    assert [r.image_id for r in found.records] == ["n01440764_tench"]
    assert found.records[0].label == 0
    assert set(found.excluded) == set(KNOWN_WATERMARKED)
    kept = scan_folder(tmp_path, keep_watermarked=True)
    assert len(kept) == 3
    assert imagenet_label("n02971356_carton.JPEG") == 478


def test_other_folders_keep_everything_but_the_known_watermarked_names(tmp_path):
    _save(tmp_path / "a" / "x.png")
    _save(tmp_path / "b" / "x.png")
    _save(tmp_path / "n01440764_tench.JPEG")
    _save(tmp_path / "n02971356_carton.JPEG")  # left out by name in any folder (issue 13.8)
    found = scan_folder(tmp_path)
    assert [r.image_id for r in found.records] == ["a/x", "b/x", "n01440764_tench"]
    assert [r.label for r in found.records] == [-1, -1, 0]
    assert list(found.excluded) == ["n02971356_carton"]
    assert len(scan_folder(tmp_path, limit=2)) == 2


def test_missing_and_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(ImageFolderError, match="does not exist"):
        scan_folder(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageFolderError, match="no image files"):
        scan_folder(tmp_path)


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (224, 224), (50, 40), (1000, 230)])
def test_frame_is_shorter_side_resize_then_centre_crop(tmp_path, size):
    w, h = size
    pixels = np.zeros((h, w, 3), dtype=np.uint8)
    pixels[:, : w // 2] = 255  # left half white: the crop must stay centred
    Image.fromarray(pixels).save(tmp_path / "a.png")
    frame = load_frame(tmp_path / "a.png")
    assert frame.size == (224, 224) and frame.mode == "RGB"
    if w >= h:
        col = np.asarray(frame)[112, :, 0]
        assert abs(int((col > 127).sum()) - 112) <= 2


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "CMYK", "I;16"])
def test_frames_from_other_modes_are_rgb(tmp_path, mode):
    path = tmp_path / ("a.jpg" if mode == "CMYK" else "a.png")
    Image.new(mode, (240, 230)).save(path)
    assert load_frame(path).mode == "RGB"
