"""Placebo controls: the box the text would have covered, filled with something that is not text.

A placebo draws its base artifact with the same random stream, keeps only the box of its ink, and
fills that box instead: ``box`` (flat, in the text's colour and opacity), ``noise`` (uniform RGB
noise, at the text's opacity) or ``blur`` (the frame itself, Gaussian-blurred, at the text's
opacity). A unit that responds to a placebo as much as to the text reacts to "something in that
box", not to text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from PIL import Image, ImageFilter

from wmprobe.errors import ScenarioSpecError
from wmprobe.probes.artifacts.base import Artifact, Drawn, check_range

#: The fills a placebo can use, in the order listed.
PLACEBO_FILLS = ("box", "noise", "blur")


@dataclass(frozen=True)
class PlaceboArtifact(Artifact):
    """The ink box of ``base`` (same stream, same box) filled with ``fill`` instead of the text.

    Example:
        >>> from wmprobe.probes.artifacts import PRESETS
        >>> placebo = PlaceboArtifact(PRESETS["latin"], "box")
        >>> frame = Image.new("RGB", (224, 224))
        >>> text_box = PRESETS["latin"].draw(frame, np.random.default_rng(1)).bbox
        >>> placebo.draw(frame, np.random.default_rng(1)).bbox == text_box
        True
    """

    kind: ClassVar[str] = "placebo"

    base: Artifact
    fill_with: str = "box"
    blur_radius: float = 4.0
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.fill_with not in PLACEBO_FILLS:
            raise ScenarioSpecError(
                f"Expected argument `fill_with` to be one of {', '.join(PLACEBO_FILLS)} "
                f"but got {self.fill_with!r}"
            )
        if isinstance(self.base, PlaceboArtifact):
            raise ScenarioSpecError("A placebo of a placebo is not defined; use the text scenario.")
        check_range("blur_radius", self.blur_radius, 0.0, 1000.0)

    def check_fits(self, frame: tuple[int, int]) -> None:
        """The base artifact's check: the placebo fills the box the base would draw."""
        self.base.check_fits(frame)

    def draw(self, image: Image.Image, rng: np.random.Generator) -> Drawn:
        """Fill the base's ink box; the noise (if any) comes from ``rng`` after the base's draws."""
        box = self.base.draw(image, rng).bbox
        if box is None:
            raise ScenarioSpecError(
                f"The {self.base.kind} artifact drew nothing, so its placebo has no box."
            )
        color, opacity = self.base.fill()
        out = image.convert("RGB").copy()
        size = (box[2] - box[0], box[3] - box[1])
        if self.fill_with == "box":
            patch = Image.new("RGB", size, color)
        elif self.fill_with == "noise":
            noise = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            patch = Image.fromarray(noise, "RGB")
        else:
            patch = out.filter(ImageFilter.GaussianBlur(self.blur_radius)).crop(box)
        mask = Image.new("L", size, round(255 * opacity))
        out.paste(patch, box[:2], mask)
        return Drawn(image=out, text="", bbox=box)

    def describe(self) -> str:
        if self.description:
            return self.description
        what = {
            "box": "a flat box in the text's colour and opacity",
            "noise": "uniform noise at the text's opacity",
            "blur": f"the frame blurred (radius {self.blur_radius:g} px) at the text's opacity",
        }[self.fill_with]
        return f"placebo: the text's box filled with {what}"

    def content(self) -> dict[str, str]:
        return self.base.content()
