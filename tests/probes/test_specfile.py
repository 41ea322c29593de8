"""The artifact specification: text and overlay options, spec files, sweeps, hashes."""

import dataclasses
import time

import numpy as np
import pytest
from PIL import Image

from wmprobe.errors import ArtifactDoesNotFitError, ScenarioSpecError
from wmprobe.probes.artifacts import (
    PRESETS,
    ImageOverlay,
    TextArtifact,
    parse_color,
    parse_position,
)
from wmprobe.probes.scenario import Scenario, resolve_scenarios
from wmprobe.probes.specfile import load_spec_file

RNG = np.random.default_rng


def _grey(size=(224, 224)):
    return Image.new("RGB", size, (90, 90, 90))


def _px(image):
    return np.asarray(image, dtype=np.int16)


def test_fixed_text_relative_size_and_named_positions():
    frame = _grey((300, 200))
    art = TextArtifact(text="www.example.com", relative_size=0.1, position="bottom-right")
    drawn = art.draw(frame, RNG(0))
    assert drawn.text == "www.example.com"
    assert art.pixel_size(frame.size) == 20
    left, top, right, bottom = drawn.bbox
    assert 298 <= right <= 300 and 198 <= bottom <= 200  # flush bottom-right (ink within 2 px)
    centre = dataclasses.replace(art, position="center").draw(frame, RNG(0)).bbox
    assert abs((centre[0] + centre[2]) / 2 - 150) <= 2
    assert abs((centre[1] + centre[3]) / 2 - 100) <= 3
    margin = dataclasses.replace(art, position="top-left", margin=10).draw(frame, RNG(0)).bbox
    assert 10 <= margin[0] <= 12 and 10 <= margin[1] <= 16
    # Twice the relative size on twice the image: twice the box.
    big = art.draw(_grey((600, 400)), RNG(0)).bbox
    assert abs((big[2] - big[0]) - 2 * (right - left)) <= 3


def test_fractional_position_and_fixed_position_ignores_the_stream():
    art = TextArtifact(text="2023-05-17", position=(0.25, 1.0))
    a = art.draw(_grey(), RNG(0))
    b = art.draw(_grey(), RNG(99))
    assert a.bbox == b.bbox and np.array_equal(_px(a.image), _px(b.image))
    assert 222 <= a.bbox[3] <= 224


def test_stroke_opacity_and_colour():
    frame = _grey()
    plain = TextArtifact(text="HELLO", size=40, color="red", position="center").draw(frame, RNG(0))
    stroked = TextArtifact(
        text="HELLO", size=40, color="red", stroke_width=2, stroke_color="black", position="center"
    ).draw(frame, RNG(0))
    assert (_px(stroked.image) == 0).all(axis=2).sum() > 50  # the black outline is there
    assert (_px(plain.image) == 0).all(axis=2).sum() == 0
    assert stroked.bbox[2] - stroked.bbox[0] > plain.bbox[2] - plain.bbox[0]
    assert tuple(_px(plain.image).reshape(-1, 3).max(axis=0)) == (255, 90, 90)
    half = TextArtifact(text="HELLO", size=40, color="red", opacity=0.5, position="center")
    assert half.draw(frame, RNG(0)).bbox == plain.bbox  # the box is the ink's at full opacity
    top_red = _px(half.draw(frame, RNG(0)).image)[..., 0].max()
    assert abs(top_red - (90 + 0.5 * (255 - 90))) <= 1


def test_rotation_and_tiling():
    flat = TextArtifact(text="STOCK", size=30, position="center").draw(_grey(), RNG(0)).bbox
    turned = TextArtifact(text="STOCK", size=30, position="center", rotation=90).draw(
        _grey(), RNG(0)
    )
    w, h = flat[2] - flat[0], flat[3] - flat[1]
    tw, th = turned.bbox[2] - turned.bbox[0], turned.bbox[3] - turned.bbox[1]
    assert abs(tw - h) <= 3 and abs(th - w) <= 3
    tiled = TextArtifact(text="STOCK", size=20, tile=True, tile_gap=10, rotation=30, opacity=0.4)
    drawn = tiled.draw(_grey(), RNG(0))
    left, top, right, bottom = drawn.bbox
    assert left <= 10 and top <= 10 and right >= 214 and bottom >= 214  # covers the frame
    changed = (_px(drawn.image) != 90).any(axis=2)
    assert 0.05 < changed.mean() < 0.6  # a pattern, not a flood


def test_image_overlay_keeps_alpha(tmp_path):
    logo = np.zeros((20, 40, 4), dtype=np.uint8)
    logo[:, :20] = (255, 0, 0, 255)  # opaque red left half, transparent right half
    Image.fromarray(logo, "RGBA").save(tmp_path / "logo.png")
    art = ImageOverlay(tmp_path / "logo.png", scale=0.5, position="top-left")
    drawn = art.draw(_grey((200, 200)), RNG(0))
    px = _px(drawn.image)
    # 40 px wide -> 100 px; the opaque half is 50 px, and Lanczos spreads its edge a few px.
    assert drawn.bbox[:2] == (0, 0) and drawn.bbox[3] == 50 and 50 <= drawn.bbox[2] <= 58
    assert tuple(px[25, 25]) == (255, 0, 0) and tuple(px[25, 75]) == (90, 90, 90)
    assert art.fill() == ((255, 0, 0), 1.0)
    with pytest.raises(ScenarioSpecError, match="image file"):
        ImageOverlay(tmp_path / "missing.png")


def test_too_small_images_are_a_clear_error():
    with pytest.raises(ArtifactDoesNotFitError, match="does not fit in a 100x20 image"):
        TextArtifact(text="www.example.com", size=30).draw(_grey((100, 20)), RNG(0))
    with pytest.raises(ArtifactDoesNotFitError, match="margin"):
        TextArtifact(text="ab", size=10, margin=60).draw(_grey((100, 100)), RNG(0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"opacity": 1.5}, "`opacity` to be in"),
        ({"size": 0}, "`size` to be >= 1"),
        ({"size": 2.5}, "`size` to be an integer"),
        ({"color": "not-a-colour"}, "`color`"),
        ({"color": [300, 0, 0]}, "`color`"),
        ({"position": "middle"}, "`position`"),
        ({"position": [1.5, 0]}, "`position`"),
        ({"text": "   "}, "`text`"),
        ({"tile": "yes"}, "`tile`"),
        ({"charset": ()}, "`charset`"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    base = {"charset": ("A",), "font": "serif"}
    with pytest.raises(ScenarioSpecError, match=message):
        TextArtifact(**{**base, **kwargs})


def test_colour_and_position_parsing():
    assert parse_color("#ff8000") == (255, 128, 0)
    assert parse_color([1, 2, 3]) == (1, 2, 3)
    assert parse_position("bottom-left") == "bottom-left"
    assert parse_position([0, 1]) == (0.0, 1.0)


GOOD_SPEC = """
[scenarios.chinese_dose]
preset = "chinese"
opacity = [0.25, 1.0]
placebos = ["box"]

[scenarios.url]
text = "www.stock-images.example"
relative_size = 0.06
color = "white"
stroke_width = 1
position = ["bottom-right", [0.5, 0.5]]
margin = 4

[scenarios.logo]
image = "logo.png"
scale = 0.2
position = "top-right"
opacity = 0.8

[scenarios.stamp]
charset = "0123456789"
length = [4, 8]
size = [12, 20]
color = [255, 140, 0]
stream = "shared"
jpeg_probe_quality = 75

[scenarios.nothing]
kind = "none"
"""


@pytest.fixture
def spec_file(tmp_path):
    Image.new("RGBA", (30, 10), (0, 0, 255, 200)).save(tmp_path / "logo.png")
    path = tmp_path / "my_spec.toml"
    path.write_text(GOOD_SPEC, encoding="utf-8")
    return path


def test_a_good_spec_file_expands_sweeps_and_placebos(spec_file):
    scenarios = load_spec_file(spec_file)
    names = [s.name for s in scenarios]
    assert names == [
        "chinese_dose@opacity=0.25",
        "chinese_dose@opacity=0.25+placebo_box",
        "chinese_dose@opacity=1",
        "chinese_dose@opacity=1+placebo_box",
        "url@position=bottom-right",
        "url@position=0.5x0.5",
        "logo",
        "stamp@length=4@size=12",
        "stamp@length=4@size=20",
        "stamp@length=8@size=12",
        "stamp@length=8@size=20",
        "nothing",
    ]
    by_name = {s.name: s for s in scenarios}
    assert by_name["chinese_dose@opacity=0.25"].artifact.opacity == 0.25
    assert by_name["stamp@length=8@size=20"].artifact.length == 8
    assert by_name["stamp@length=8@size=20"].artifact.color == (255, 140, 0)  # not swept
    assert by_name["stamp@length=4@size=12"].jpeg_probe_quality == 75
    assert {s.stream_name for s in scenarios if s.name.startswith("stamp")} == {"shared"}
    assert by_name["url@position=0.5x0.5"].artifact.position == (0.5, 0.5)
    assert by_name["logo"].artifact.kind == "image"
    # Sweep members share the stream: same strings and places at each dose.
    frame = _grey()
    low = by_name["chinese_dose@opacity=0.25"].draw(frame, seed=0, image_id="a")
    full = by_name["chinese_dose@opacity=1"].draw(frame, seed=0, image_id="a")
    preset = Scenario.preset("chinese").draw(frame, seed=0, image_id="a")
    assert low.text == full.text == preset.text and low.bbox == full.bbox
    assert np.array_equal(_px(full.image), _px(preset.image))  # opacity 1 is the preset itself
    # Every scenario of the file draws, and resolve_scenarios takes the file too.
    for scenario in resolve_scenarios([str(spec_file)]):
        scenario.draw(frame, seed=1, image_id="b")


@pytest.mark.parametrize(
    "text, message",
    [
        ("[scenarios.a\ntext = 1", "not valid TOML"),
        ("title = 'x'\n[scenarios.a]\ntext = 'x'", "top-level keys"),
        ("[scenarios.a]\ntext = 'x'\nopacty = 0.5", "unknown key\\(s\\) opacty.*known:.*opacity"),
        ("[scenarios.a]\nsize = 3", "cannot tell what to draw"),
        ("[scenarios.a]\ntext = 'x'\nkind = 'image'", "contradicts"),
        ("[scenarios.a]\ntext = 'x'\nopacity = 2.0", r"\[scenarios.a\]: .*`opacity` to be in"),
        ("[scenarios.a]\ntext = 'x'\nsize = []", "empty list"),
        ("[scenarios.a]\nimage = 'nope.png'", "image file"),
        ("[scenarios.a]\npreset = 'klingon'", "`preset` to be one of"),
        ("[scenarios.a]\ntext = 'x'\nplacebos = ['glitter']", "`placebos`"),
        ("[scenarios.'a b']\ntext = 'x'", "scenario name"),
        ("[scenarios.a]\ntext = 'x'\njpeg_probe_quality = 100", "jpeg_probe_quality"),
        ("[scenarios.a]\nkind = 'none'\nplacebos = ['box']", "draws nothing"),
    ],
)
def test_bad_spec_files_give_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioSpecError, match=message) as info:
        load_spec_file(path)
    assert "bad.toml" in str(info.value)


def test_missing_spec_file():
    with pytest.raises(ScenarioSpecError, match="does not exist"):
        resolve_scenarios(["/no/such/spec.toml"])


def test_spec_hash_is_stable_and_sensitive(spec_file, tmp_path):
    a = {s.name: s.spec_hash() for s in load_spec_file(spec_file)}
    b = {s.name: s.spec_hash() for s in load_spec_file(spec_file)}
    assert a == b and len(set(a.values())) == len(a)
    chinese = Scenario.preset("chinese")
    assert chinese.spec_hash() == Scenario.preset("chinese").spec_hash()
    bigger = dataclasses.replace(PRESETS["chinese"], size=31)
    changed = dataclasses.replace(chinese, artifact=bigger)
    assert changed.spec_hash() != chinese.spec_hash()
    renamed_stream = dataclasses.replace(chinese, stream="other")
    assert renamed_stream.spec_hash() != chinese.spec_hash()
    # The overlay's bytes are part of the hash, not its path.
    Image.new("RGBA", (30, 10), (0, 255, 0, 200)).save(tmp_path / "logo.png")
    c = {s.name: s.spec_hash() for s in load_spec_file(spec_file)}
    assert c["logo"] != a["logo"] and c["url@position=0.5x0.5"] == a["url@position=0.5x0.5"]


def test_spec_font_files_are_relative_to_the_spec_and_hashed_by_content(tmp_path):
    from wmprobe.probes.artifacts import font_path

    (tmp_path / "own.ttf").write_bytes(font_path("serif").read_bytes())
    spec = tmp_path / "s.toml"
    spec.write_text('[scenarios.own_font]\ntext = "Hello"\nfont = "own.ttf"\n')
    (scenario,) = load_spec_file(spec)
    assert scenario.artifact.font == str(tmp_path / "own.ttf")
    assert scenario.draw(_grey(), seed=0, image_id="a").bbox is not None
    before = scenario.spec_hash()
    (tmp_path / "own.ttf").write_bytes(font_path("devanagari").read_bytes())
    assert scenario.spec_hash() != before


def _sweep(key: str, n: int) -> str:
    return f"{key} = [{', '.join(['20'] * n)}]\n"


@pytest.mark.parametrize(
    "tables, count, before",
    [
        ({"a": _sweep("size", 101) + _sweep("length", 100)}, "10,100", "0"),
        ({"a": _sweep("size", 6000), "b": _sweep("size", 5000)}, "5,000", "6,000"),
        ({"a": _sweep("size", 1000) + _sweep("length", 1000)}, "1,000,000", "0"),
    ],
)
def test_absurd_sweeps_are_refused_before_any_scenario_is_made(tmp_path, tables, count, before):
    path = tmp_path / "huge.toml"
    path.write_text("".join(f"[scenarios.{n}]\ntext = 'x'\n{v}" for n, v in tables.items()))
    start = time.perf_counter()
    with pytest.raises(ScenarioSpecError, match=rf"expands to {count} scenarios \({before} before"):
        load_spec_file(path)
    assert time.perf_counter() - start < 5  # refused up front, not after making them
