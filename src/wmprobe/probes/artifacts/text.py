"""Text artifacts: a random string from a character set, or a fixed string, drawn on the frame."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from wmprobe._util import file_digest
from wmprobe.errors import ArtifactDoesNotFitError, ScenarioSpecError
from wmprobe.probes.artifacts.base import (
    RGB,
    Artifact,
    BBox,
    Drawn,
    check_range,
    parse_color,
)
from wmprobe.probes.artifacts.fonts import FAMILIES, font_path, load_font
from wmprobe.probes.artifacts.layout import (
    RANDOM,
    Position,
    compose,
    parse_position,
    place,
    placement_words,
    rotate_unit,
)

__all__ = ["BBox", "Drawn", "TextArtifact"]


@dataclass(frozen=True)
class TextArtifact(Artifact):
    """A string drawn once per image: ``length`` symbols from ``charset``, or the fixed ``text``.

    By default (the paper's setting) the string is drawn at a random place where its whole ink
    box is visible: x, then y, uniform over every such place.

    Attributes:
        charset: the symbols to draw from (with replacement); ignored when ``text`` is given.
        font: a font family (``cjk``, ``devanagari``, ``serif``) or a font file path.
        length: number of symbols in a random string.
        size: font size in pixels.
        color: RGB fill colour (also ``"#rrggbb"`` or a colour name).
        opacity: 0 (invisible) to 1 (opaque).
        text: a fixed string (a URL, a date stamp) instead of a random one.
        relative_size: font size as a fraction of the image's shorter side; overrides ``size``.
        stroke_width, stroke_color: an outline around the glyphs, in px and RGB.
        position: ``"random"`` (fully visible), a named place (``"center"``, ``"top-left"``,
            ``"bottom-right"``, ...) or ``(fx, fy)``: fractions of the free space, 0 flush
            left/top and 1 flush right/bottom, so the text is always wholly inside the image.
        margin: px kept free between the text and the image's edges.
        rotation: degrees, counter-clockwise.
        tile: repeat the text over the whole image (a stock-photo pattern), ``tile_gap`` px apart,
            on the grid through the placed copy.

    Example:
        >>> art = TextArtifact(("A", "B"), font="serif")
        >>> drawn = art.draw(Image.new("RGB", (224, 224)), np.random.default_rng(0))
        >>> len(drawn.text)
        7
    """

    kind: ClassVar[str] = "text"

    charset: Sequence[str] = ()
    font: str = "serif"
    length: int = 7
    size: int = 30
    color: RGB = (255, 255, 255)
    opacity: float = 1.0
    description: str = field(default="", compare=False)
    text: str | None = None
    relative_size: float | None = None
    stroke_width: int = 0
    stroke_color: RGB = (0, 0, 0)
    position: Position = RANDOM
    margin: int = 0
    rotation: float = 0.0
    tile: bool = False
    tile_gap: int = 16

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "charset", tuple(self.charset))
        if self.text is None and not self.charset:
            raise ScenarioSpecError(
                "Expected argument `charset` to be non-empty (or a fixed `text`) but got nothing"
            )
        if self.text is not None and (not isinstance(self.text, str) or not self.text.strip()):
            raise ScenarioSpecError(
                f"Expected argument `text` to be a non-blank string but got {self.text!r}"
            )
        if not isinstance(self.font, str) or not self.font:
            raise ScenarioSpecError(f"Expected argument `font` to be a name but got {self.font!r}")
        for name in ("length", "size"):
            if not isinstance(getattr(self, name), int):
                raise ScenarioSpecError(
                    f"Expected argument `{name}` to be an integer but got {getattr(self, name)!r}"
                )
            check_range(name, getattr(self, name), 1)
        for name in ("stroke_width", "margin", "tile_gap"):
            if not isinstance(getattr(self, name), int):
                raise ScenarioSpecError(
                    f"Expected argument `{name}` to be an integer but got {getattr(self, name)!r}"
                )
            check_range(name, getattr(self, name), 0)
        check_range("opacity", self.opacity, 0.0, 1.0)
        check_range("rotation", self.rotation, -360.0, 360.0)
        if self.relative_size is not None:
            check_range("relative_size", self.relative_size, 1e-3, 1.0)
        set_(self, "color", parse_color(self.color, "color"))
        set_(self, "stroke_color", parse_color(self.stroke_color, "stroke_color"))
        set_(self, "position", parse_position(self.position))
        if not isinstance(self.tile, bool):
            raise ScenarioSpecError(
                f"Expected argument `tile` to be true or false but got {self.tile!r}"
            )
        for name in ("opacity", "rotation"):
            set_(self, name, float(getattr(self, name)))
        if self.relative_size is not None:
            set_(self, "relative_size", float(self.relative_size))

    def pixel_size(self, image_size: tuple[int, int]) -> int:
        """The font size in px on an image of ``image_size``."""
        if self.relative_size is None:
            return self.size
        return max(1, round(self.relative_size * min(image_size)))

    def sample_text(self, rng: np.random.Generator) -> str:
        """The string: the fixed ``text``, or ``length`` symbols from ``charset`` (replacement)."""
        if self.text is not None:
            return self.text
        idx = rng.integers(0, len(self.charset), size=self.length)
        return "".join(self.charset[i] for i in idx)

    def draw(self, image: Image.Image, rng: np.random.Generator) -> Drawn:
        """Draw a fresh string: the string, then x, then y come from ``rng``, in that order."""
        return self.draw_text(image, self.sample_text(rng), rng)

    def draw_text(self, image: Image.Image, text: str, rng: np.random.Generator) -> Drawn:
        """Draw ``text`` at this artifact's position (a random position comes from ``rng``)."""
        px = self.pixel_size(image.size)
        unit = rotate_unit(self.render(text, load_font(self.font, px)), self.rotation)
        what = f"Text {text!r} at size {px}px"
        origin = place(rng, unit.size, image.size, self.position, self.margin, what=what)
        placed = compose(
            image, unit, origin, self.opacity, tile_gap=self.tile_gap if self.tile else None
        )
        return Drawn(image=placed.image, text=text, bbox=placed.bbox)

    def render(self, text: str, font: ImageFont.FreeTypeFont) -> Image.Image:
        """The tight RGBA unit of ``text``: its font box (stroke included), colour and alpha."""
        sw = self.stroke_width
        if not sw:  # one layout: the mask of the font box, as draw.text would make it
            mask, _ = font.getmask2(text, mode="L")
            self._check_ink(text, mask.size)
            unit = Image.new("RGBA", mask.size, (*self.color, 255))
            unit.putalpha(Image.Image()._new(mask))
            return unit
        left, top, right, bottom = font.getbbox(text, stroke_width=sw)
        size = (right - left, bottom - top)
        self._check_ink(text, size)
        alpha = Image.new("L", size, 0)
        ImageDraw.Draw(alpha).text((-left, -top), text, font=font, fill=255, stroke_width=sw)
        unit = Image.new("RGBA", size, (*self.stroke_color, 255))
        inner = Image.new("L", size, 0)
        ImageDraw.Draw(inner).text((-left, -top), text, font=font, fill=255)
        unit.paste((*self.color, 255), (0, 0, *size), inner)
        unit.putalpha(alpha)
        return unit

    def check_fits(self, frame: tuple[int, int]) -> None:
        """Refuse sizes, strokes, margins and lengths with which no string fits on ``frame``.

        A fixed ``text`` is rendered once and refused exactly when drawing would refuse it; a
        random string is refused when even its narrowest symbols, ``length`` of them, are wider
        than the frame can hold at this rotation (or more symbols than it has pixels across).
        """
        width, height = frame
        where = f"the {width}x{height} frame"
        px = self.pixel_size(frame)
        if px > min(frame):
            raise ArtifactDoesNotFitError(
                f"A font size of {px} px cannot fit in {where}; use a size up to {min(frame)}."
            )
        free = min(frame) - 2 * self.margin
        if free < 1:
            raise ArtifactDoesNotFitError(
                f"Expected argument `margin` to leave room in {where} but {self.margin} px on "
                "each side leaves none."
            )
        if 2 * self.stroke_width >= free:
            raise ArtifactDoesNotFitError(
                f"Expected argument `stroke_width` to fit in {where} but got "
                f"{self.stroke_width} px."
            )
        turn = math.radians(self.rotation)
        reach = free / max(abs(math.cos(turn)), abs(math.sin(turn)))  # longest line that fits
        n_symbols = len(self.text) if self.text is not None else self.length
        if n_symbols > reach:
            raise ArtifactDoesNotFitError(
                f"A string of {n_symbols} symbols cannot fit in {where} (at most one symbol "
                f"per pixel across, {int(reach)} here); use a shorter text or length."
            )
        font = load_font(self.font, px)
        if self.text is not None:  # drawn exactly as on every image
            unit = rotate_unit(self.render(self.text, font), self.rotation)
            place(
                np.random.default_rng(0),
                unit.size,
                frame,
                self.position,
                self.margin,
                what=f"Text {self.text!r} at size {px}px",
            )
            return
        narrowest = min(font.getlength(ch) for ch in set(self.charset))
        least = n_symbols * narrowest - 2 * px  # bearings at both ends
        if least > reach:
            raise ArtifactDoesNotFitError(
                f"A string of {n_symbols} symbols at {px} px is at least {int(least)} px long and "
                f"cannot fit in {where}; use a smaller size or length."
            )

    def _check_ink(self, text: str, size: tuple[int, int]) -> None:
        if size[0] <= 0 or size[1] <= 0:
            raise ArtifactDoesNotFitError(f"Text {text!r} draws no ink in font {self.font!r}.")

    def describe(self) -> str:
        what = (
            repr(self.text)
            if self.text is not None
            else f"{self.length} of {''.join(self.charset)}"
        )
        size = f"{self.size}px"
        if self.relative_size:
            size = f"{self.relative_size:g} of the shorter side"
        parts = [f"{what} at {size} ({self.font})"]
        parts += placement_words(
            self.opacity, self.position, self.rotation, self.tile, self.tile_gap
        )
        if self.stroke_width:
            parts.append(f"{self.stroke_width}px outline")
        details = ", ".join(parts)
        return f"{self.description}: {details}" if self.description else details

    def content(self) -> dict[str, str]:
        path = font_path(self.font)
        if self.font in FAMILIES:
            return {"font": f"{path.name}:{path.stat().st_size}"}
        return {"font": file_digest(path)}

    def fill(self) -> tuple[RGB, float]:
        return self.color, self.opacity
