"""Detector files: the packaged ones load weights_only; thresholds; bad files give clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wmprobe.errors import InvalidArgumentError
from wmprobe.scanning.detector import (
    PACKAGED,
    PACKAGED_NAMES,
    Detector,
    DetectorError,
    load_detector,
)
from wmprobe.scanning.files import iter_images


@pytest.mark.parametrize("name", PACKAGED_NAMES)
def test_packaged_detectors_load_weights_only(name):
    path = PACKAGED / f"{name}.pt"
    payload = torch.load(path, weights_only=True)
    det = load_detector(name)
    assert det.info["command"].startswith("wmprobe detector train")
    assert len(det.calibration) >= 100 and path.stat().st_size < 500_000
    assert payload["calibration"].numpy().tolist() == det.calibration.tolist()


def test_default_detector_scores_a_feature_map():
    det = load_detector()
    scores = det.score(torch.zeros(2, 112, 20, 20))
    assert scores.score.shape == (2,) and len(scores.region) == 2
    assert scores.family[0] in det.families


def test_threshold_is_the_clean_quantile():
    det = Detector("units", "m", "features", 8, {}, calibration=np.arange(100.0))
    assert det.threshold(0.01) == 98.0  # one clean score (99) lies above it
    assert det.threshold(0.1) == 89.0
    with pytest.raises(InvalidArgumentError, match="at least 1/100"):
        det.threshold(0.001)
    with pytest.raises(InvalidArgumentError, match=r"in \(0, 1\)"):
        det.threshold(1.5)


def test_bad_detector_sources(tmp_path):
    with pytest.raises(DetectorError, match="does not exist"):
        load_detector(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"config": "{}", "state": {}, "calibration": torch.zeros(1)}, bad)
    with pytest.raises(DetectorError, match="not a wmprobe detector"):
        load_detector(bad)


def test_iter_images_streams_recursively(tmp_path):
    from PIL import Image

    for rel in ("b/z.png", "a/y.jpg", "x.png", "a/deep/w.png", "notes.txt"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("txt"):
            path.write_text("x")
        else:
            Image.new("RGB", (40, 40)).save(path)
    stream = iter_images(tmp_path)
    assert not isinstance(stream, list)
    found = sorted(p[len(str(tmp_path)) + 1 :] for p in stream)
    assert found == ["a/deep/w.png", "a/y.jpg", "b/z.png", "x.png"]
