import numpy as np
import pytest
from fontTools.ttLib import TTFont
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from wmprobe.errors import ArtifactDoesNotFitError, UnknownScenarioError
from wmprobe.probes.artifacts import (
    CHARSETS,
    PAPER_SCENARIOS,
    PRESETS,
    TextArtifact,
    font_path,
    load_font,
)
from wmprobe.probes.scenario import Scenario, probe_rng


def test_paper_charsets():
    assert "".join(CHARSETS["chinese"]) == "的一是不了在人有我他这个们中来上大为和国"
    assert "".join(CHARSETS["latin"]) == "IEAUTSRNOMCLPDBQGVFH"
    assert "".join(CHARSETS["numerals"]) == "0123456789"
    assert " ".join(CHARSETS["hindi"]) == "ा क े र ह स न ी ं म ि ् त प ल ो य ै ब द"
    for name in ("chinese", "latin", "hindi"):
        assert len(set(CHARSETS[name])) == 20
    for art in (PRESETS[n] for n in PAPER_SCENARIOS):
        assert (art.length, art.size, art.color, art.opacity) == (7, 30, (255, 255, 255), 1.0)


@pytest.mark.parametrize("scenario", PAPER_SCENARIOS)
def test_every_character_is_a_real_glyph(scenario):
    art = PRESETS[scenario]
    path = font_path(art.font)
    cmap = TTFont(str(path), fontNumber=0, lazy=True).getBestCmap()
    font = load_font(art.font, art.size)
    missing = "\U000f0000"  # private use: renders the missing-glyph box, if anything

    def ink(text):
        im = Image.new("L", (120, 80))
        ImageDraw.Draw(im).text((40, 20), text, font=font, fill=255)
        return np.asarray(im)

    notdef = ink(missing)
    for ch in art.charset:
        assert ord(ch) in cmap, f"{ch!r} (U+{ord(ch):04X}) has no glyph in {path.name}"
        # A base letter next to the symbol, so combining marks have something to sit on.
        base = "क" if scenario == "hindi" else ""
        with_ch, without = ink(base + ch), ink(base)
        assert (with_ch != without).sum() > 5, f"{ch!r} draws no ink"
        assert not np.array_equal(ink(ch), notdef), f"{ch!r} draws the missing-glyph box"


def test_devanagari_is_shaped():
    # With shaping, the vowel sign ि is drawn before (left of) its consonant; without, after it.
    font = load_font("devanagari", 30)
    shaped = font.getbbox("कि")
    assert font.getlength("कि") < font.getlength("क") + font.getlength("ि") + 1
    assert shaped[2] > shaped[0]
    im = Image.new("L", (100, 60))
    ImageDraw.Draw(im).text((10, 10), "क्ष", font=font, fill=255)  # conjunct: one cluster
    single = np.asarray(im).any(axis=0).nonzero()[0]
    assert single.size and single.max() - single.min() < font.getlength("क") + font.getlength("ष")


def test_same_seed_same_pixels_and_different_seed_differs():
    frame = Image.new("RGB", (224, 224), (40, 90, 10))
    sc = Scenario.preset("chinese")
    a = sc.draw(frame, seed=3, image_id="x")
    b = sc.draw(frame, seed=3, image_id="x")
    c = sc.draw(frame, seed=4, image_id="x")
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image)) and a.text == b.text
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))


def test_rng_depends_on_image_and_scenario():
    draws = {
        (i, s): probe_rng(0, i, s).integers(0, 2**31)
        for i in ("a", "b")
        for s in ("chinese", "latin")
    }
    assert len(set(draws.values())) == 4


@settings(max_examples=60, deadline=None)
@given(
    scenario=st.sampled_from(PAPER_SCENARIOS),
    seed=st.integers(0, 2**31),
    width=st.integers(215, 600),
    height=st.integers(40, 600),
)
def test_text_lies_wholly_inside_the_image(scenario, seed, width, height):
    frame = Image.new("RGB", (width, height))
    art = PRESETS[scenario]
    rng = np.random.default_rng(seed)
    drawn = art.draw(frame, rng)
    assert drawn.bbox is not None
    left, top, right, bottom = drawn.bbox
    assert 0 <= left < right <= width and 0 <= top < bottom <= height
    # Nothing was clipped: the ink box is as large as that of the string on a roomy canvas.
    font = load_font(art.font, art.size)
    roomy = Image.new("L", (width + 200, height + 200))
    ImageDraw.Draw(roomy).text((100, 100), drawn.text, font=font, fill=255)
    rl, rt, rr, rb = roomy.getbbox()
    assert (right - left, bottom - top) == (rr - rl, rb - rt)


def test_text_too_large_is_a_clear_error():
    with pytest.raises(ArtifactDoesNotFitError, match="does not fit"):
        PRESETS["chinese"].draw(Image.new("RGB", (60, 60)), np.random.default_rng(0))


def test_white_text_and_unknown_scenario():
    drawn = PRESETS["latin"].draw(Image.new("RGB", (224, 224)), np.random.default_rng(0))
    assert np.asarray(drawn.image).max() == 255
    with pytest.raises(UnknownScenarioError, match="wmprobe scenarios"):
        Scenario.preset("klingon")
    with pytest.raises(ValueError, match="opacity"):
        TextArtifact(("a",), font="serif", opacity=2.0)


@pytest.mark.parametrize("scenario", ["chinese", "latin", "hindi", "numerals"])
def test_text_unit_alpha_is_what_draw_text_draws(scenario):
    """The one-layout mask equals drawing the text on a canvas of its font box."""
    art = Scenario.preset(scenario).artifact
    rng = np.random.default_rng(5)
    for size in (12, 30, 61):
        font = load_font(art.font, size)
        for _ in range(20):
            text = art.sample_text(rng)
            left, top, right, bottom = font.getbbox(text)
            expected = Image.new("L", (right - left, bottom - top), 0)
            ImageDraw.Draw(expected).text((-left, -top), text, font=font, fill=255)
            unit = art.render(text, font)
            assert unit.size == expected.size
            assert np.array_equal(np.asarray(unit.getchannel("A")), np.asarray(expected))
