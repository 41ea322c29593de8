"""``mitigate`` refuses downstream data on which a head cannot be measured, before any work."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from wmprobe.errors import MitigationError
from wmprobe.mitigation import mitigate


def _folder(root, counts: dict[str, int]):
    rng = np.random.default_rng(0)
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _run(image_dir, down, cache, **kw):
    return mitigate(
        image_dir, down, model="tiny_test_net", fractions=[0.0, 0.5], cache_dir=cache,
        num_workers=0, progress=False, limit=4, **kw,
    )  # fmt: skip


def test_one_class_is_refused_before_any_work(image_dir, tmp_path):
    down = _folder(tmp_path / "down", {"cat": 6})
    with pytest.raises(MitigationError, match=r"1 class \(cat: 6 images\).*at least 2"):
        _run(image_dir, down, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # no feature was computed


def test_classes_without_a_test_image_are_refused_with_the_counts(image_dir, tmp_path):
    down = _folder(tmp_path / "down", {"cat": 5, "dog": 1, "eel": 1})
    with pytest.raises(MitigationError, match=r"test image.*2 of 3 classes.*dog: 1, eel: 1"):
        _run(image_dir, down, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    many = _folder(tmp_path / "many", {"cat": 5, "dog": 5})
    with pytest.raises(MitigationError, match=r"2 of 2 classes.*cat: 1, dog: 1"):
        _run(image_dir, many, tmp_path / "cache", limit_per_class=1)
    assert not (tmp_path / "cache").exists()


def test_a_class_left_without_a_test_image_by_unreadable_files_is_refused(image_dir, tmp_path):
    down = _folder(tmp_path / "down", {"cat": 3, "dog": 2})
    (down / "dog" / "1.png").write_bytes(b"not an image")
    with pytest.raises(MitigationError, match=r"readable images; 1 skipped.*dog: 1"):
        _run(image_dir, down, tmp_path / "cache")
