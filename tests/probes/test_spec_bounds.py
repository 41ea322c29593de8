"""Spec values are checked against what drawing can do, before any image is read."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from wmprobe.auditing.run import audit
from wmprobe.errors import ArtifactDoesNotFitError, ScenarioSpecError, WmprobeError
from wmprobe.probes.artifacts import ImageNetWArtifact, ImageOverlay, TextArtifact
from wmprobe.probes.artifacts.placebo import PlaceboArtifact
from wmprobe.probes.scenario import resolve_scenarios


def _spec(tmp_path, body: str):
    path = tmp_path / "spec.toml"
    path.write_text(body)
    return str(path)


@pytest.mark.parametrize(
    "line",
    [
        "opacity = nan",
        "opacity = inf",
        "rotation = nan",
        "rotation = -inf",
        "relative_size = nan",
        "position = [nan, 0.5]",
        "position = [0.5, inf]",
    ],
)
def test_non_finite_text_values_are_refused(tmp_path, line):
    spec = _spec(tmp_path, f'[scenarios.x]\ntext = "ABC"\n{line}\n')
    with pytest.raises(ScenarioSpecError, match=r"finite|fractions in \[0, 1\]"):
        resolve_scenarios([spec])


def test_non_finite_numbers_are_refused_in_every_artifact(tmp_path):
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (20, 10), (255, 0, 0, 255)).save(logo)
    nan = float("nan")
    for make in (
        lambda: TextArtifact(("A",), opacity=nan),
        lambda: ImageOverlay(str(logo), scale=nan),
        lambda: ImageOverlay(str(logo), opacity=float("inf")),
        lambda: ImageNetWArtifact(x_pos=nan),
        lambda: PlaceboArtifact(TextArtifact(("A",)), "blur", blur_radius=float("inf")),
    ):
        with pytest.raises(ScenarioSpecError, match="finite"):
            make()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("size = 100000", r"100000 px.*224x224"),
        ("length = 1000000", r"1000000 symbols.*224x224"),
        ("stroke_width = 100000", r"stroke_width.*224x224"),
        ("margin = 112", r"margin.*224x224"),
    ],
)
def test_values_drawing_cannot_do_are_refused_before_any_image_is_read(tmp_path, line, message):
    spec = _spec(tmp_path, f'[scenarios.x]\npreset = "latin"\n{line}\n')
    with pytest.raises(WmprobeError, match=message):
        resolve_scenarios([spec])
    # audit checks the scenarios first: the missing image folder is never reached
    with pytest.raises(WmprobeError, match=message):
        audit(tmp_path / "no-such-folder", scenarios=[spec], cache=False)


def test_a_fixed_text_too_wide_for_the_frame_is_refused_with_both_sizes(tmp_path):
    spec = _spec(tmp_path, '[scenarios.x]\ntext = "www.a-very-long-address.example/x"\nsize = 40\n')
    with pytest.raises(ArtifactDoesNotFitError, match=r"\d+x\d+ px.*224x224"):
        resolve_scenarios([spec])
    # the same text, smaller, fits and draws
    fits = _spec(tmp_path, '[scenarios.x]\ntext = "www.a-very-long-address.example/x"\nsize = 9\n')
    (scenario,) = resolve_scenarios([fits])
    frame = Image.new("RGB", (224, 224))
    assert scenario.draw(frame, seed=0, image_id="a").bbox is not None


def test_an_overlay_too_tall_for_the_frame_is_refused(tmp_path):
    logo = tmp_path / "tall.png"
    Image.new("RGBA", (10, 100), (255, 0, 0, 255)).save(logo)
    spec = _spec(tmp_path, '[scenarios.x]\nimage = "tall.png"\nscale = 0.5\n')
    with pytest.raises(ArtifactDoesNotFitError, match=r"112x1120 px.*224x224"):
        resolve_scenarios([spec])


def test_the_paper_presets_and_sensible_values_still_pass():
    for name in ("chinese", "latin", "hindi", "numerals", "null", "chinese+placebo_blur"):
        resolve_scenarios([name])
    art = TextArtifact(("A", "B"), size=60, length=3, rotation=45, margin=10, stroke_width=2)
    art.check_fits((224, 224))
    art.draw(Image.new("RGB", (224, 224)), np.random.default_rng(0))
