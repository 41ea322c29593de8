"""Scenarios round-trip through run.json: ``Scenario.from_dict(s.to_dict())`` is ``s`` again.

Same ``spec_hash``, same pixels, for presets with every modifier, spec-file scenarios with sweeps
and placebos, image overlays with their own files, and probe folders; and through JSON, as
run.json stores them.
"""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from wmprobe.errors import ScenarioSpecError
from wmprobe.probes.artifacts import PLACEBO_FILLS, PRESETS, ImageOverlay, TextArtifact
from wmprobe.probes.folder import FolderScenario
from wmprobe.probes.scenario import Scenario, resolve_scenarios

SPEC = """
[scenarios.url]
text = "www.stock-images.example"
font = "serif"
relative_size = 0.06
color = "#ffee00"
stroke_width = 1
stroke_color = "black"
position = "bottom-right"
margin = 4
description = "a URL in the corner"

[scenarios.dose]
preset = "chinese"
opacity = [0.25, 1.0]
position = [[0.1, 0.9], "center"]
placebos = ["box", "noise"]

[scenarios.pattern]
text = "STOCK PHOTO"
opacity = 0.3
rotation = 30
tile = true
tile_gap = 24
jpeg_probe_quality = 60

[scenarios.logo]
image = "logo.png"
scale = 0.2
position = "top-right"
placebos = ["blur"]
"""


def _frame(seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _same(a: Scenario, b: Scenario, image_id: str = "a/b_1") -> None:
    assert type(a) is type(b)
    assert a.spec_hash() == b.spec_hash()
    assert a == b and a.describe() == b.describe()
    frame = _frame()
    x, y = a.draw(frame, seed=3, image_id=image_id), b.draw(frame, seed=3, image_id=image_id)
    assert np.array_equal(np.asarray(x.image), np.asarray(y.image))
    assert (x.text, x.bbox) == (y.text, y.bbox)


def _through_json(scenario: Scenario) -> Scenario:
    return Scenario.from_dict(json.loads(json.dumps(scenario.to_dict())))


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("spec")
    logo = np.zeros((40, 80, 4), dtype=np.uint8)
    logo[8:32, 8:72] = (250, 20, 20, 200)
    Image.fromarray(logo, "RGBA").save(root / "logo.png")
    (root / "spec.toml").write_text(SPEC)
    return root / "spec.toml"


PRESET_NAMES = [
    *PRESETS,
    *(f"{n}+placebo_{f}" for n in ("chinese", "latin", "hindi") for f in PLACEBO_FILLS),
    "null+jpeg_probe",
    "numerals+jpeg_probe_q30",
    "latin+placebo_noise+jpeg_probe",
]


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_and_their_variants_round_trip(name):
    scenario = Scenario.preset(name)
    if name.startswith("imagenet_w"):
        pytest.importorskip("imagenet_w", reason="the optional imagenet-w package is absent")
    _same(scenario, _through_json(scenario))


def test_every_spec_file_scenario_round_trips_from_anywhere(spec_file, tmp_path, monkeypatch):
    scenarios = resolve_scenarios([str(spec_file)])
    names = [s.name for s in scenarios]
    assert (
        "dose@opacity=0.25@position=0.1x0.9+placebo_noise" in names and "logo+placebo_blur" in names
    )
    stored = json.dumps([s.to_dict() for s in scenarios])
    monkeypatch.chdir(tmp_path)  # another working folder: paths in the spec are absolute
    for scenario, data in zip(scenarios, json.loads(stored), strict=True):
        _same(scenario, Scenario.from_dict(data))


def test_a_probe_folder_round_trips_with_its_files_hash(tmp_path, monkeypatch):
    folder = tmp_path / "probes" / "sub"
    folder.mkdir(parents=True)
    _frame(1).save(folder / "x.png")
    monkeypatch.chdir(tmp_path)
    scenario = resolve_scenarios(["folder:probes"])[0]
    data = json.loads(json.dumps(scenario.to_dict()))
    monkeypatch.chdir(tmp_path.parent)  # the stored folder is absolute
    again = Scenario.from_dict(data)
    assert isinstance(again, FolderScenario) and again.name == "folder:probes"
    _same(scenario, again, image_id="sub/x")


def test_a_damaged_spec_is_a_clear_error():
    with pytest.raises(ScenarioSpecError, match="`name`"):
        Scenario.from_dict({"artifact": {}})
    with pytest.raises(ScenarioSpecError, match="kind"):
        Scenario.from_dict({"name": "x", "artifact": {"kind": "teapot"}})
    with pytest.raises(ScenarioSpecError, match="does not fit"):
        Scenario.from_dict({"name": "x", "artifact": {"kind": "text", "colour": "red"}})


positions = st.one_of(
    st.sampled_from(["random", "center", "top-left", "bottom-right"]),
    st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
texts = st.builds(
    TextArtifact,
    charset=st.just(("A", "b", "7")),
    font=st.sampled_from(["serif", "cjk"]),
    length=st.integers(1, 5),
    size=st.integers(8, 30),
    color=st.tuples(*[st.integers(0, 255)] * 3),
    opacity=st.floats(0, 1),
    text=st.one_of(st.none(), st.sampled_from(["www.x.example", "2024-01-01"])),
    relative_size=st.one_of(st.none(), st.floats(0.02, 0.1)),
    stroke_width=st.integers(0, 2),
    position=positions,
    margin=st.integers(0, 4),
    rotation=st.floats(-45, 45),
    tile=st.booleans(),
    tile_gap=st.integers(0, 30),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    artifact=texts,
    stream=st.one_of(st.none(), st.sampled_from(["chinese", "s2"])),
    quality=st.one_of(st.none(), st.integers(1, 95)),
    placebo=st.sampled_from([None, *PLACEBO_FILLS]),
)
def test_any_text_scenario_round_trips(artifact, stream, quality, placebo):
    scenario = Scenario(name="t", artifact=artifact, stream=stream, jpeg_probe_quality=quality)
    if placebo is not None:
        from wmprobe.probes.scenario import with_modifiers

        scenario = with_modifiers(scenario, [f"placebo_{placebo}"])
    again = _through_json(scenario)
    assert again.spec_hash() == scenario.spec_hash() and again == scenario
    frame = _frame()
    try:
        x = scenario.draw(frame, seed=1, image_id="i")
    except Exception as exc:  # text too large for the frame: the rebuilt one says the same
        with pytest.raises(type(exc)):
            again.draw(frame, seed=1, image_id="i")
        return
    y = again.draw(frame, seed=1, image_id="i")
    assert np.array_equal(np.asarray(x.image), np.asarray(y.image))


def test_an_overlay_keeps_its_file_by_full_path(spec_file):
    overlay = ImageOverlay(spec_file.parent / "logo.png", scale=0.3)
    spec = overlay.to_spec()
    assert spec["image"] == str((spec_file.parent / "logo.png").resolve())
    assert overlay.to_dict()["image"] == "logo.png"  # the hashed form is machine-independent
