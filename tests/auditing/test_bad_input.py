"""The bad-input matrix: each row is a counted skip or a used image, never a crash."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from wmprobe.auditing.run import audit
from wmprobe.cli import main
from wmprobe.probes.images import load_frame


def _noise(w, h, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)


def fill_with_bad_input(root):
    """Write every row of the matrix into ``root`` (which exists)."""
    _noise(300, 240).save(root / "good.jpg", quality=90)
    data = (root / "good.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "zero.jpg").write_bytes(b"")
    (root / "text.png").write_text("this is not an image")
    _noise(260, 250).convert("CMYK").save(root / "cmyk.jpg")
    _noise(260, 250, "RGBA").save(root / "rgba.png")
    _noise(260, 250, "P").save(root / "palette.png")
    _noise(260, 250, "LA").save(root / "la.png")
    Image.fromarray(np.full((250, 260), 40000, dtype=np.uint16)).save(root / "deep16.png")
    _noise(260, 250, "L").save(root / "grey.png")
    Image.new("RGB", (1, 1)).save(root / "one_pixel.png")
    Image.new("RGB", (10000, 10000), (10, 20, 30)).save(root / "huge.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    _noise(320, 240).save(root / "rotated.jpg", exif=exif)
    for sub in ("a", "b"):
        (root / sub).mkdir()
        _noise(256, 256, seed=ord(sub)).save(root / sub / "same.png")
    os.symlink(root / "missing-target.jpg", root / "dangling.jpg")


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    fill_with_bad_input(root)
    return root


SKIPPED = {"truncated", "zero", "text", "one_pixel", "dangling"}
USED = {
    "good",
    "cmyk",
    "rgba",
    "palette",
    "la",
    "deep16",
    "grey",
    "huge",
    "rotated",
    "a/same",
    "b/same",
}


@pytest.mark.slow
def test_matrix_through_the_cli(bad_folder, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(
        main,
        [
            "audit",
            "--images",
            str(bad_folder),
            "--out",
            str(out),
            "--model",
            "tiny_test_net",
            "--scenarios",
            "latin",
            "--workers",
            "0",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    run = json.loads((out / "run.json").read_text())
    skipped = run["images_skipped"]
    assert set(skipped) == SKIPPED and run["images_used"] == len(USED)
    assert "under 32 px" in skipped["one_pixel"] and "truncated" in skipped["truncated"]
    assert f"skipped {len(SKIPPED)} unreadable" in res.output
    used = set(pd.read_parquet(out / "units.parquet")["model"])
    assert used == {"tiny_test_net"}


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((240, 320, 3), dtype=np.uint8)
    pixels[:, :160] = 255  # the left half white, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: the white half goes to the top
    Image.fromarray(pixels).save(tmp_path / "r.jpg", exif=exif, quality=95)
    frame = np.asarray(load_frame(tmp_path / "r.jpg"))
    assert frame[:20].mean() > 200 and frame[-20:].mean() < 30


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_a_skip(tmp_path):
    _noise(256, 256).save(tmp_path / "ok.png")
    _noise(256, 256).save(tmp_path / "locked.png")
    os.chmod(tmp_path / "locked.png", 0)
    result = audit(
        tmp_path, model="tiny_test_net", scenarios=["latin"], progress=False, num_workers=0
    )
    assert set(result.activations.skipped) == {"locked"}


@pytest.mark.slow
def test_matrix_through_generate(bad_folder, tmp_path):
    out = tmp_path / "probes"
    argv = ["generate", "--scenario", "latin", "--images", str(bad_folder), "--out", str(out)]
    res = CliRunner().invoke(main, [*argv, "--quiet"])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    assert f"latin: {len(USED)} probes" in res.output
    assert f"skipped {len(SKIPPED)} unreadable" in res.output
    manifest = json.loads((out / "probe_set.json").read_text())
    assert set(manifest["images_skipped"]) == SKIPPED
    written = {
        p.relative_to(out / "probes").with_suffix("").as_posix()
        for p in (out / "probes").rglob("*.png")
    }
    assert written == USED


@pytest.mark.slow
def test_matrix_through_mitigate(bad_folder, tmp_path):
    downstream = tmp_path / "downstream"
    (downstream / "matrix").mkdir(parents=True)
    fill_with_bad_input(downstream / "matrix")
    (downstream / "plain").mkdir()
    for i in range(8):
        _noise(120, 100, seed=100 + i).save(downstream / "plain" / f"{i}.png")
    out = tmp_path / "run"
    argv = ["mitigate", "--model", "tiny_test_net", "--images", str(bad_folder), "--downstream"]
    argv += [str(downstream), "--out", str(out), "--fractions", "0,0.25", "--scenario", "latin"]
    argv += ["--cache", str(tmp_path / "cache"), "--workers", "0", "--quiet"]
    res = CliRunner().invoke(main, argv)
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    assert f"skipped {len(SKIPPED)} unreadable probe image(s)" in res.output
    assert f"skipped {len(SKIPPED)} unreadable downstream image(s)" in res.output
    assert f"over {len(USED)} probe images" in res.output
    run = json.loads((out / "run.json").read_text())
    assert set(run["probe_images_skipped"]) == SKIPPED
    assert set(run["downstream_skipped"]) == {f"matrix/{s}" for s in SKIPPED}
    assert f"{len(USED) + 8} images" in res.output


@pytest.mark.parametrize(
    "argv, message",
    [
        ("audit --model tiny_test_net --images EMPTY --out OUT", "holds no image files"),
        ("generate --scenario latin --images EMPTY --out OUT", "holds no image files"),
        ("mitigate --model tiny_test_net --images EMPTY --downstream GOOD --out OUT",
         "holds no image files"),
        ("mitigate --model tiny_test_net --images GOOD --downstream EMPTY --out OUT",
         "no class sub-folders"),
    ],
)  # fmt: skip
def test_an_empty_folder_is_an_error_before_any_work(argv, message, bad_folder, tmp_path):
    (tmp_path / "empty").mkdir()
    good = tmp_path / "good"  # the smallest downstream data that can measure a head
    for label in ("a", "b"):
        (good / label).mkdir(parents=True)
        for i in range(2):
            _noise(64, 64, seed=i).save(good / label / f"{i}.png")
    paths = {"EMPTY": tmp_path / "empty", "GOOD": good, "OUT": tmp_path / "out"}
    args = [str(paths.get(a, a)) for a in argv.split()] + ["--workers", "0"] * (argv[0] != "g")
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and message in res.output, res.output
    assert "Traceback" not in res.output and "img/s" not in res.output  # no image was read
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["audit", "mitigate"])
def test_a_folder_of_unreadable_images_is_an_error_not_an_empty_table(command, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "zero.jpg").write_bytes(b"")
    (broken / "text.png").write_text("not an image")
    for label in ("a", "b"):  # the smallest downstream data that can measure a head
        (tmp_path / "good" / label).mkdir(parents=True)
        for i in range(2):
            _noise(64, 64, seed=i).save(tmp_path / "good" / label / f"{i}.png")
    out = tmp_path / "out"
    argv = [command, "--model", "tiny_test_net", "--images", str(broken), "--out", str(out)]
    argv += ["--workers", "0", "--quiet", "--cache", str(tmp_path / "cache")]
    if command == "mitigate":
        argv += ["--downstream", str(tmp_path / "good")]
    res = CliRunner().invoke(main, argv)
    assert res.exit_code == 1, res.output
    assert "None of the 2 images could be read" in res.output and "Traceback" not in res.output
    assert not (out / "run.json").exists()
