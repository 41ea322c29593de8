"""Scenarios: placebos, null, JPEG options, reproducibility, resolving names, ImageNet-W."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFilter

from wmprobe.errors import (
    ArtifactDoesNotFitError,
    OptionalDependencyError,
    ScenarioSpecError,
    UnknownScenarioError,
)
from wmprobe.extraction.activations import extract
from wmprobe.models import load_model
from wmprobe.probes.artifacts import CHARSETS, PAPER_SCENARIOS, PRESETS, TextArtifact, load_font
from wmprobe.probes.images import jpeg_roundtrip, load_frame, scan_folder
from wmprobe.probes.scenario import Scenario, catalog, resolve_scenarios

try:
    import imagenet_w
except ImportError:  # an optional extra
    imagenet_w = None

needs_imagenet_w = pytest.mark.skipif(
    imagenet_w is None, reason="the optional imagenet-w package is not installed"
)
SRC = Path(__file__).resolve().parents[2] / "src"
TEXT_PRESETS = [*PAPER_SCENARIOS, *(["imagenet_w"] if imagenet_w else [])]
ALL_NAMES = [n for n, _ in catalog() if imagenet_w or not n.startswith("imagenet_w")]


def _frame(seed=0, size=(224, 224)):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3))
    return Image.fromarray(pixels.astype(np.uint8))


def _px(image):
    return np.asarray(image, dtype=np.int16)


def _paper_draw_before_this_change(art, image, rng):
    """The paper presets' drawing as it was before artifact specs (frozen for this test)."""
    idx = rng.integers(0, len(art.charset), size=art.length)
    text = "".join(art.charset[i] for i in idx)
    font = load_font(art.font, art.size)
    left, top, right, bottom = font.getbbox(text)
    x = int(rng.integers(-left, image.size[0] - right + 1))
    y = int(rng.integers(-top, image.size[1] - bottom + 1))
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).text((x, y), text, font=font, fill=255)
    out = image.convert("RGB").copy()
    out.paste(Image.new("RGB", image.size, art.color), (0, 0), mask)
    return out, text, mask.getbbox()


@pytest.mark.parametrize("name", PAPER_SCENARIOS)
def test_paper_presets_draw_the_same_pixels_as_before(name):
    art = PRESETS[name]
    for seed in range(25):
        frame = _frame(seed, (224 + seed, 224 + 3 * seed))
        image, text, bbox = _paper_draw_before_this_change(art, frame, np.random.default_rng(seed))
        drawn = art.draw(frame, np.random.default_rng(seed))
        assert drawn.text == text and drawn.bbox == bbox
        assert np.array_equal(_px(drawn.image), _px(image))


@pytest.mark.parametrize("name", TEXT_PRESETS)
def test_placebos_cover_exactly_the_text_box(name):
    frame = _frame(1)
    for image_id in ("a", "b", "c"):
        text = Scenario.preset(name).draw(frame, seed=2, image_id=image_id)
        color, opacity = PRESETS[name].fill()
        for fill in ("box", "noise", "blur"):
            placebo = Scenario.preset(f"{name}+placebo_{fill}")
            assert placebo.stream_name == name
            drawn = placebo.draw(frame, seed=2, image_id=image_id)
            assert drawn.bbox == text.bbox and drawn.text == ""
            left, top, right, bottom = drawn.bbox
            inside = np.zeros((224, 224), dtype=bool)
            inside[top:bottom, left:right] = True
            diff = (_px(drawn.image) != _px(frame)).any(axis=2)
            assert not diff[~inside].any()  # nothing outside the box
            assert diff[inside].mean() > 0.9  # (almost) everything inside it
            box = _px(drawn.image)[top:bottom, left:right]
            if fill == "box" and opacity == 1.0:
                assert (box == color).all()
            if fill == "blur" and opacity == 1.0:
                blurred = _px(frame.filter(ImageFilter.GaussianBlur(4)))[top:bottom, left:right]
                assert np.array_equal(box, blurred)


def test_null_is_the_clean_frame_and_placebo_of_null_is_refused():
    frame = _frame(3)
    drawn = Scenario.preset("null").draw(frame, seed=0, image_id="x")
    assert np.array_equal(_px(drawn.image), _px(frame)) and drawn.bbox is None
    with pytest.raises(ScenarioSpecError, match="draws nothing"):
        Scenario.preset("null+placebo_box")


def test_jpeg_probe_reencodes_the_probe_alone():
    frame = _frame(4)
    probe = Scenario.preset("null+jpeg_probe").draw(frame, seed=0, image_id="x").image
    assert np.array_equal(_px(probe), _px(jpeg_roundtrip(frame, 75)))
    assert not np.array_equal(_px(probe), _px(frame))
    q50 = Scenario.preset("latin+jpeg_probe_q50")
    text = Scenario.preset("latin").draw(frame, seed=0, image_id="x")
    drawn = q50.draw(frame, seed=0, image_id="x")
    assert q50.stream_name == "latin" and drawn.text == text.text  # same string, re-encoded
    assert np.array_equal(_px(drawn.image), _px(jpeg_roundtrip(text.image, 50)))


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny_test_net", device="cpu")


def test_null_gives_identical_activations_and_jpeg_options_act_on_the_right_side(tiny, image_dir):
    import torch

    records = scan_folder(image_dir, limit=5).records
    scenarios = resolve_scenarios(["null", "null+jpeg_probe", "latin"])
    plain = extract(tiny, records, scenarios, num_workers=0, progress=False)
    np.testing.assert_array_equal(plain.get("logits", "clean"), plain.get("logits", "null"))
    assert not np.allclose(plain.get("logits", "clean"), plain.get("logits", "null+jpeg_probe"))
    both = extract(tiny, records, scenarios, num_workers=0, progress=False, jpeg_quality=75)
    # Both sides alike: the null is still identical; the clean side is the JPEG frame, and the
    # text probe is the frame with the text drawn, then JPEG-encoded (not drawn on the JPEG).
    np.testing.assert_array_equal(both.get("logits", "clean"), both.get("logits", "null"))

    def model(images):
        pixels = np.stack([np.asarray(im) for im in images]).transpose(0, 3, 1, 2)
        with torch.inference_mode():
            return tiny.module(tiny.preprocess(torch.from_numpy(pixels))).numpy()

    clean = [load_frame(r.path, jpeg_quality=75) for r in records]
    np.testing.assert_allclose(both.get("logits", "clean"), model(clean), rtol=1e-5, atol=1e-5)
    latin = scenarios[2]
    probes = [
        jpeg_roundtrip(latin.draw(load_frame(r.path), seed=0, image_id=r.image_id).image, 75)
        for r in records
    ]
    np.testing.assert_allclose(both.get("logits", "latin"), model(probes), rtol=1e-5, atol=1e-5)
    # Probe-only re-encoding leaves the clean side as it was without any re-encoding.
    only = extract(tiny, records, scenarios[1:], num_workers=0, progress=False)
    np.testing.assert_array_equal(only.get("logits", "clean"), plain.get("logits", "clean"))


_CHILD = """
import hashlib, json, sys
import numpy as np
from PIL import Image
from wmprobe.probes.scenario import resolve_scenarios
names, ids = json.loads(sys.argv[1]), json.loads(sys.argv[2])
pixels = np.random.default_rng(0).integers(0, 256, size=(224, 224, 3)).astype(np.uint8)
frame = Image.fromarray(pixels)
out = {}
for sc in resolve_scenarios(names):
    for image_id in ids:
        d = sc.draw(frame, seed=7, image_id=image_id)
        out[sc.name + "/" + image_id] = hashlib.sha256(np.asarray(d.image).tobytes()).hexdigest()
    out[sc.name] = sc.spec_hash()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_identical_pixels_and_hashes_in_another_process_and_any_order():
    names = ["chinese", "hindi+placebo_noise", "latin+placebo_blur", "null+jpeg_probe"]
    ids = ["a", "dir/b", "c"]
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONHASHSEED": "123"}
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(names), json.dumps(ids)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    theirs = json.loads(child.stdout)
    frame = Image.fromarray(
        np.random.default_rng(0).integers(0, 256, size=(224, 224, 3)).astype(np.uint8)
    )
    scenarios = resolve_scenarios(names)
    pairs = [(sc, i) for sc in scenarios for i in ids][::-1]  # the other order
    for sc, image_id in pairs:
        d = sc.draw(frame, seed=7, image_id=image_id)
        digest = hashlib.sha256(np.asarray(d.image).tobytes()).hexdigest()
        assert theirs[sc.name + "/" + image_id] == digest
    assert all(theirs[sc.name] == sc.spec_hash() for sc in scenarios)


@settings(max_examples=120, deadline=None)
@given(
    name=st.sampled_from(ALL_NAMES),
    seed=st.integers(0, 2**31),
    width=st.integers(16, 640),
    height=st.integers(16, 640),
)
def test_every_box_lies_inside_the_image_or_the_error_is_clear(name, seed, width, height):
    frame = Image.new("RGB", (width, height), (30, 60, 90))
    scenario = Scenario.preset(name)
    try:
        drawn = scenario.draw(frame, seed=seed, image_id="x")
    except ArtifactDoesNotFitError as exc:
        assert "does not fit" in str(exc) and f"{width}x{height}" in str(exc)
        assert min(width, height) < 250  # every preset fits the paper's 224 frame and larger
        return
    assert drawn.image.size == (width, height)
    if name.startswith("null"):
        assert drawn.bbox is None
        return
    left, top, right, bottom = drawn.bbox
    assert 0 <= left < right <= width and 0 <= top < bottom <= height


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(alphabet="ABCXYZ0123456789-.:/", min_size=1, max_size=12).filter(str.strip),
    size=st.integers(6, 60),
    rotation=st.floats(-90, 90),
    position=st.one_of(
        st.just("random"),
        st.sampled_from(["center", "top-left", "bottom-right", "top", "left"]),
        st.tuples(st.floats(0, 1), st.floats(0, 1)),
    ),
    margin=st.integers(0, 8),
    stroke=st.integers(0, 3),
    seed=st.integers(0, 1000),
)
def test_custom_text_is_fully_visible_wherever_it_is_placed(
    text, size, rotation, position, margin, stroke, seed
):
    art = TextArtifact(
        text=text,
        size=size,
        rotation=rotation,
        position=position,
        margin=margin,
        stroke_width=stroke,
    )
    frame = Image.new("RGB", (224, 224))
    try:
        drawn = art.draw(frame, np.random.default_rng(seed))
    except ArtifactDoesNotFitError:
        return
    left, top, right, bottom = drawn.bbox
    assert margin <= left < right <= 224 - margin and margin <= top < bottom <= 224 - margin


def test_resolver_names_errors_and_duplicates():
    got = resolve_scenarios(["chinese+jpeg_probe+placebo_box", "null"])
    assert [s.name for s in got] == ["chinese+placebo_box+jpeg_probe", "null"]
    with pytest.raises(UnknownScenarioError, match="Did you mean chinese.*wmprobe scenarios"):
        resolve_scenarios(["latin", "chinse"])
    with pytest.raises(UnknownScenarioError, match="Presets: chinese, latin"):
        resolve_scenarios(["elvish"])
    with pytest.raises(UnknownScenarioError, match="Unknown modifier 'placebo_glow'"):
        resolve_scenarios(["latin+placebo_glow"])
    with pytest.raises(ScenarioSpecError, match="given twice"):
        resolve_scenarios(["latin", "latin"])
    with pytest.raises(ScenarioSpecError, match=r"\[1, 95\]"):
        resolve_scenarios(["null+jpeg_probe_q0"])
    with pytest.raises(ScenarioSpecError, match="not 'clean'"):
        Scenario(name="clean", artifact=PRESETS["null"])


def test_missing_imagenet_w_says_how_to_install(monkeypatch):
    from wmprobe.probes.artifacts import imagenet_w as adapter

    monkeypatch.setitem(sys.modules, "imagenet_w", None)  # import fails as if not installed
    adapter._transform.cache_clear()
    with pytest.raises(OptionalDependencyError, match=r"pip install 'wmprobe\[imagenet-w\]'"):
        resolve_scenarios(["imagenet_w"])
    adapter._transform.cache_clear()


@needs_imagenet_w
def test_imagenet_w_is_the_packages_own_transform_on_our_frame():
    frame = load_frame_like_imagenet = _frame(5)
    ours = Scenario.preset("imagenet_w").draw(frame, seed=0, image_id="x")
    theirs = imagenet_w.AddWatermark(224)(load_frame_like_imagenet)
    assert np.array_equal(_px(ours.image), _px(theirs))
    assert ours.text == "捷径捷径捷径"
    left, top, right, bottom = ours.bbox
    changed = np.argwhere((_px(ours.image) != _px(frame)).any(axis=2))
    assert changed[:, 1].min() >= left and changed[:, 1].max() < right
    assert changed[:, 0].min() >= top and changed[:, 0].max() < bottom


def test_charsets_unchanged_by_specs():
    # The paper presets keep their charsets, sizes and colours (exported for the other tests).
    assert PRESETS["hindi"].charset == CHARSETS["hindi"]
    assert all(PRESETS[n].size == 30 and PRESETS[n].length == 7 for n in PAPER_SCENARIOS)
