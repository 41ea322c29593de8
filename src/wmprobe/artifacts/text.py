"""Text artifacts: a random string from a character set, drawn where it is fully visible."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from ..errors import ArtifactDoesNotFitError
from .fonts import load_font

BBox = tuple[int, int, int, int]
"""A box ``(left, top, right, bottom)`` in pixels, right and bottom exclusive."""


@dataclass(frozen=True)
class Drawn:
    """An image with an artifact drawn on it, what was drawn, and the box of its ink."""

    image: Image.Image
    text: str
    bbox: BBox | None


@dataclass(frozen=True)
class TextArtifact:
    """A string of ``length`` symbols drawn at random from ``charset``, drawn once per image.

    Attributes:
        charset: the symbols to draw from (with replacement).
        font: a font family (``cjk``, ``devanagari``, ``serif``) or a font file path.
        length: number of symbols in the string.
        size: font size in pixels.
        color: RGB fill colour.
        opacity: 0 (invisible) to 1 (opaque).

    Example:
        >>> from wmprobe.artifacts import PRESETS
        >>> art = PRESETS["latin"]
        >>> frame = Image.new("RGB", (224, 224))
        >>> drawn = art.draw(frame, np.random.default_rng(0))
        >>> len(drawn.text)
        7
    """

    charset: Sequence[str]
    font: str
    length: int = 7
    size: int = 30
    color: tuple[int, int, int] = (255, 255, 255)
    opacity: float = 1.0
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.charset:
            raise ValueError("Expected argument `charset` to be non-empty but got nothing")
        if self.length < 1:
            raise ValueError(f"Expected argument `length` to be >= 1 but got {self.length}")
        if self.size < 1:
            raise ValueError(f"Expected argument `size` to be >= 1 but got {self.size}")
        if not 0.0 <= self.opacity <= 1.0:
            raise ValueError(f"Expected argument `opacity` to be in [0, 1] but got {self.opacity}")

    def sample_text(self, rng: np.random.Generator) -> str:
        """Draw the string: ``length`` symbols from ``charset``, with replacement."""
        idx = rng.integers(0, len(self.charset), size=self.length)
        return "".join(self.charset[i] for i in idx)

    def draw(self, image: Image.Image, rng: np.random.Generator) -> Drawn:
        """Draw a fresh random string at a random position where its whole ink box is visible."""
        text = self.sample_text(rng)
        return self.draw_text(image, text, rng)

    def draw_text(self, image: Image.Image, text: str, rng: np.random.Generator) -> Drawn:
        """Draw ``text`` at a random fully visible position (the position comes from ``rng``)."""
        font = load_font(self.font, self.size)
        left, top, right, bottom = font.getbbox(text)
        width, height = image.size
        if right - left > width or bottom - top > height:
            raise ArtifactDoesNotFitError(
                f"Text {text!r} at size {self.size}px is {right - left}x{bottom - top} px and does "
                f"not fit in a {width}x{height} image; use a smaller size or a larger image."
            )
        x = int(rng.integers(-left, width - right + 1))
        y = int(rng.integers(-top, height - bottom + 1))
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).text((x, y), text, font=font, fill=255)
        if self.opacity < 1.0:
            mask = mask.point(lambda v: round(v * self.opacity))
        out = image.convert("RGB").copy()
        out.paste(Image.new("RGB", image.size, self.color), (0, 0), mask)
        return Drawn(image=out, text=text, bbox=mask.getbbox())
