"""The scan's mark families and hard negatives: deterministic, and drawn wholly inside the frame."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from wmprobe.errors import ScenarioSpecError
from wmprobe.probes.artifacts.marks import MARK_FAMILIES, MarkArtifact
from wmprobe.probes.artifacts.presets import PRESETS
from wmprobe.probes.artifacts.scene import SCENE_KINDS, SceneArtifact
from wmprobe.probes.scenario import Scenario

FRAMES = [(224, 224), (448, 448), (160, 120)]


def _frame(size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize("name", MARK_FAMILIES + SCENE_KINDS)
@pytest.mark.parametrize("size", FRAMES)
def test_family_is_deterministic_and_inside_the_frame(name, size):
    frame = _frame(size)
    art = PRESETS[name]
    for seed in range(12):
        a = art.draw(frame, np.random.default_rng(seed))
        b = art.draw(frame, np.random.default_rng(seed))
        assert a.text == b.text and a.bbox == b.bbox
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
        left, top, right, bottom = a.bbox
        assert 0 <= left < right <= size[0] and 0 <= top < bottom <= size[1]
        diff = np.abs(np.asarray(a.image, np.int16) - np.asarray(frame, np.int16)).sum(-1)
        ys, xs = np.nonzero(diff)
        assert len(xs), f"{name} drew nothing"
        # every changed pixel lies in the reported box (placebo shapes: the union of its boxes)
        assert xs.min() >= left and xs.max() < right and ys.min() >= top and ys.max() < bottom


def test_families_vary_between_images():
    frame = _frame((224, 224))
    for name in MARK_FAMILIES:
        boxes = {PRESETS[name].draw(frame, np.random.default_rng(s)).bbox for s in range(8)}
        assert len(boxes) > 1, name


def test_presets_resolve_as_scenarios_for_audit():
    for name in MARK_FAMILIES + SCENE_KINDS:
        scenario = Scenario.preset(name)
        drawn = scenario.draw(_frame((224, 224)), seed=0, image_id="x")
        assert drawn.bbox is not None
        assert scenario.spec_hash() == Scenario.preset(name).spec_hash()


def test_bad_family_is_a_clear_error():
    with pytest.raises(ScenarioSpecError, match="family"):
        MarkArtifact("nope")
    with pytest.raises(ScenarioSpecError, match="variant"):
        SceneArtifact("nope")
    with pytest.raises(ScenarioSpecError, match="scale"):
        MarkArtifact("logo", scale=9)
