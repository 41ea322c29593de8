"""Families of the marks real images carry, each drawn with varied text, size, colour and place.

A :class:`MarkArtifact` draws one family per image; every choice (string, font size, colour,
opacity, position, rotation) comes from the image's random stream, so the same stream gives the
same pixels. Every mark lies wholly inside the frame (tiled marks are cut at its edges). Sizes
are fractions of the frame's shorter side, so a family looks alike at 224 px and at 448 px.

The families (``MARK_FAMILIES``), all presets of ``wmprobe scenarios``:
``overlay_text`` (ImageNet-W-like semi-transparent text), ``agency_text`` (large semi-transparent
stock-agency text, single or tiled, rotated), ``corner_url`` (small site names and URLs near an
edge), ``credit`` (photographer credits and signatures), ``copyright`` (copyright lines),
``date_stamp`` (orange seven-segment camera date stamps), ``logo`` (a drawn shape with text) and
``caption`` (a bordered caption band or box). The hard negatives that are not overlays live in
:mod:`wmprobe.probes.artifacts.scene`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from wmprobe.errors import ScenarioSpecError
from wmprobe.probes.artifacts import mark_text
from wmprobe.probes.artifacts.base import RGB, Artifact, Drawn
from wmprobe.probes.artifacts.fonts import load_font
from wmprobe.probes.artifacts.layout import compose, place, rotate_unit
from wmprobe.probes.artifacts.text import TextArtifact

MARK_FAMILIES = (
    "overlay_text",
    "agency_text",
    "corner_url",
    "credit",
    "copyright",
    "date_stamp",
    "logo",
    "caption",
)
_CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right", "bottom", "top")
_LIGHT = ((255, 255, 255), (235, 235, 235), (255, 255, 200))
_DARK = ((0, 0, 0), (40, 40, 40), (90, 90, 90))
_VIVID = ((220, 30, 30), (30, 80, 200), (250, 200, 0), (0, 150, 70), (255, 120, 0))


def text_unit(
    text: str,
    font: str,
    px: int,
    color: RGB,
    stroke_width: int = 0,
    stroke_color: RGB = (0, 0, 0),
) -> Image.Image:
    """The tight RGBA picture of ``text`` at ``px`` px (the same rendering as text presets)."""
    art = TextArtifact(
        text=text, font=font, color=color, stroke_width=stroke_width, stroke_color=stroke_color
    )
    return art.render(text, load_font(font, max(1, px)))


def fit_unit(unit: Image.Image, frame: tuple[int, int], margin: int) -> Image.Image:
    """``unit`` scaled down (aspect kept) until it fits in the frame with ``margin`` px free."""
    room_w, room_h = frame[0] - 2 * margin, frame[1] - 2 * margin
    scale = min(1.0, room_w / unit.size[0], room_h / unit.size[1])
    if scale >= 1.0:
        return unit
    size = (max(1, int(unit.size[0] * scale)), max(1, int(unit.size[1] * scale)))
    return unit.convert("RGBa").resize(size, Image.Resampling.LANCZOS).convert("RGBA")


def seven_segment_unit(text: str, height: int, color: RGB) -> Image.Image:
    """``text`` (digits, ``'/.:`` and spaces) in seven-segment glyphs, lightly glowing."""
    segs = {  # a b c d e f g: top, top-right, bottom-right, bottom, bottom-left, top-left, middle
        "0": "abcdef", "1": "bc", "2": "abdeg", "3": "abcdg", "4": "bcfg", "5": "acdfg",
        "6": "acdefg", "7": "abc", "8": "abcdefg", "9": "abcdfg",
    }  # fmt: skip
    h = max(8, height)
    w, t = max(4, round(0.5 * h)), max(1, round(h / 9))
    gap = max(2, round(0.22 * h))
    widths = [w if ch in segs else max(t * 2, gap) for ch in text]
    size = (sum(widths) + gap * (len(text) + 1), h + 2 * t)
    alpha = Image.new("L", size, 0)
    draw = ImageDraw.Draw(alpha)
    x = gap
    for ch, cw in zip(text, widths, strict=True):
        y0, ym, y1 = t, t + h // 2, t + h - 1
        lines = {
            "a": (x, y0, x + cw, y0), "b": (x + cw, y0, x + cw, ym), "c": (x + cw, ym, x + cw, y1),
            "d": (x, y1, x + cw, y1), "e": (x, ym, x, y1), "f": (x, y0, x, ym),
            "g": (x, ym, x + cw, ym),
        }  # fmt: skip
        for s in segs.get(ch, ""):
            draw.line(lines[s], fill=255, width=t)
        if ch in "'.:":
            ys = [y0] if ch == "'" else [y1] if ch == "." else [y0 + h // 3, y1 - h // 3]
            for y in ys:
                draw.rectangle((x, y, x + t, y + t), fill=255)
        if ch == "/":
            draw.line((x + cw, y0, x, y1), fill=255, width=t)
        x += cw + gap
    glow = alpha.filter(ImageFilter.GaussianBlur(max(0.5, t / 2)))
    alpha = Image.fromarray(np.maximum(np.asarray(alpha), np.asarray(glow)))
    unit = Image.new("RGBA", size, (*color, 255))
    unit.putalpha(alpha)
    return unit


def shape_unit(rng: np.random.Generator, side: int, color: RGB) -> Image.Image:
    """A logo's drawn shape: circle, ring, square, diamond, triangle or star, ``side`` px."""
    side = max(6, side)
    alpha = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(alpha)
    kind = int(rng.integers(0, 6))
    box = (0, 0, side - 1, side - 1)
    width = max(1, side // 8)
    c, r = side / 2, side / 2 - 1
    if kind == 0:
        draw.ellipse(box, fill=255)
    elif kind == 1:
        draw.ellipse(box, outline=255, width=width)
    elif kind == 2:
        draw.rounded_rectangle(box, radius=side // 5, fill=255)
    elif kind == 3:
        draw.polygon([(c, 0), (side - 1, c), (c, side - 1), (0, c)], fill=255)
    elif kind == 4:
        draw.polygon([(c, 0), (side - 1, side - 1), (0, side - 1)], outline=255, width=width)
    else:
        angles = np.arange(10) * np.pi / 5 - np.pi / 2
        radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        draw.polygon(
            [(c + rr * np.cos(a), c + rr * np.sin(a)) for a, rr in zip(angles, radii, strict=True)],
            255,
        )
    unit = Image.new("RGBA", (side, side), (*color, 255))
    unit.putalpha(alpha)
    return unit


def _pick(rng: np.random.Generator, options: tuple) -> object:
    return options[int(rng.integers(0, len(options)))]


def _px(rng: np.random.Generator, frame: tuple[int, int], low: float, high: float) -> int:
    return max(6, round(float(rng.uniform(low, high)) * min(frame)))


@dataclass(frozen=True)
class MarkArtifact(Artifact):
    """One mark of ``family`` per image, every detail drawn from the image's random stream.

    Attributes:
        family: one of :data:`MARK_FAMILIES`.
        scale: multiplies every size the family draws (0.5 halves them).

    Example:
        >>> art = MarkArtifact("date_stamp")
        >>> drawn = art.draw(Image.new("RGB", (224, 224)), np.random.default_rng(0))
        >>> box = drawn.bbox
        >>> 0 <= box[0] < box[2] <= 224 and 0 <= box[1] < box[3] <= 224
        True
    """

    kind: ClassVar[str] = "mark"

    family: str
    scale: float = 1.0
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.family not in MARK_FAMILIES:
            raise ScenarioSpecError(
                f"Expected argument `family` to be one of {', '.join(MARK_FAMILIES)} "
                f"but got {self.family!r}"
            )
        if isinstance(self.scale, bool) or not isinstance(self.scale, int | float):
            raise ScenarioSpecError(
                f"Expected argument `scale` to be a number but got {self.scale!r}"
            )
        if not 0.1 <= self.scale <= 4.0:
            raise ScenarioSpecError(
                f"Expected argument `scale` to be in [0.1, 4] but got {self.scale}"
            )

    def draw(self, image: Image.Image, rng: np.random.Generator) -> Drawn:
        frame = image.size
        unit, text, position, opacity, tile_gap = getattr(self, f"_{self.family}")(rng, frame)
        margin = max(0, round(float(rng.uniform(0.0, 0.04)) * min(frame)))
        unit = fit_unit(unit, frame, margin)
        origin = place(rng, unit.size, frame, position, margin, what=f"The {self.family} mark")
        placed = compose(image, unit, origin, opacity, tile_gap=tile_gap)
        return Drawn(image=placed.image, text=text, bbox=placed.bbox)

    def _size(self, rng: np.random.Generator, frame: tuple[int, int], lo: float, hi: float) -> int:
        return _px(rng, frame, lo * self.scale, hi * self.scale)

    def _overlay_text(self, rng, frame):
        text, font = mark_text.overlay_words(rng)
        color = _pick(rng, _LIGHT + _DARK + ((128, 128, 128),))
        unit = text_unit(text, font, self._size(rng, frame, 0.06, 0.16), color)
        return unit, text, "random", float(rng.uniform(0.3, 0.7)), None

    def _agency_text(self, rng, frame):
        text = mark_text.agency(rng)
        color = _pick(rng, _LIGHT + ((128, 128, 128), (0, 0, 0)))
        font = str(_pick(rng, ("serif", "cjk")))
        tiled = rng.random() < 0.4
        px = self._size(rng, frame, 0.07, 0.12) if tiled else self._size(rng, frame, 0.12, 0.28)
        stroke = int(rng.integers(0, 3))
        unit = text_unit(text, font, px, color, stroke, _pick(rng, _DARK + _LIGHT))
        unit = rotate_unit(unit, float(rng.uniform(-45, 45)) if rng.random() < 0.6 else 0.0)
        gap = round(float(rng.uniform(0.05, 0.2)) * min(frame)) if tiled else None
        return unit, text, "center" if not tiled else "random", float(rng.uniform(0.2, 0.55)), gap

    def _corner_url(self, rng, frame):
        text = mark_text.site(rng)
        color = _pick(rng, _LIGHT + _DARK + _VIVID)
        stroke = int(rng.integers(0, 2))
        font = str(_pick(rng, ("serif", "cjk")))
        px = self._size(rng, frame, 0.035, 0.07)
        unit = text_unit(text, font, px, color, stroke, _pick(rng, _DARK + _LIGHT))
        return unit, text, _pick(rng, _CORNERS), float(rng.uniform(0.6, 1.0)), None

    def _credit(self, rng, frame):
        text = mark_text.credit(rng)
        color = _pick(rng, _LIGHT + _DARK + _VIVID)
        px = self._size(rng, frame, 0.04, 0.09)
        unit = text_unit(text, str(_pick(rng, ("serif", "cjk"))), px, color)
        if rng.random() < 0.5:  # a signature: slanted, with a flourish under it
            shear = float(rng.uniform(0.2, 0.45))
            w, h = unit.size
            pad = round(shear * h) + 1
            wide = Image.new("RGBA", (w + pad, h + max(2, h // 4)), (*color, 0))
            wide.paste(unit, (pad, 0))
            unit = wide.transform(wide.size, Image.Transform.AFFINE, (1, shear, 0, 0, 1, 0))
            draw = ImageDraw.Draw(unit)
            y = unit.size[1] - max(2, h // 8)
            draw.line(
                (pad, y, unit.size[0] - 1, y - h // 6), fill=(*color, 255), width=max(1, h // 12)
            )
            box = unit.getchannel("A").getbbox()
            unit = unit.crop(box) if box else unit
        return unit, text, _pick(rng, _CORNERS + ("random",)), float(rng.uniform(0.6, 1.0)), None

    def _copyright(self, rng, frame):
        text = mark_text.copyright_line(rng)
        color = _pick(rng, _LIGHT + _DARK)
        px = self._size(rng, frame, 0.03, 0.06)
        unit = text_unit(
            text, str(_pick(rng, ("serif", "cjk"))), px, color, int(rng.integers(0, 2))
        )
        return unit, text, _pick(rng, _CORNERS), float(rng.uniform(0.6, 1.0)), None

    def _date_stamp(self, rng, frame):
        text = mark_text.date_stamp(rng)
        color = _pick(rng, ((255, 140, 20), (255, 110, 0), (255, 170, 40), (250, 80, 20)))
        unit = seven_segment_unit(text, self._size(rng, frame, 0.04, 0.075), color)
        position = _pick(rng, ("bottom-right", "bottom-right", "bottom-left", "top-right"))
        return unit, text, position, float(rng.uniform(0.8, 1.0)), None

    def _logo(self, rng, frame):
        color = _pick(rng, _LIGHT + _DARK + _VIVID)
        px = self._size(rng, frame, 0.05, 0.1)
        shape = shape_unit(rng, round(px * float(rng.uniform(1.2, 2.0))), color)
        text = mark_text.word(rng).capitalize()
        label = text_unit(text, str(_pick(rng, ("serif", "cjk"))), px, color)
        below = rng.random() < 0.4
        gap = max(2, px // 4)
        if below:
            size = (max(shape.width, label.width), shape.height + gap + label.height)
            spots = (
                ((size[0] - shape.width) // 2, 0),
                ((size[0] - label.width) // 2, shape.height + gap),
            )
        else:
            size = (shape.width + gap + label.width, max(shape.height, label.height))
            spots = (
                (0, (size[1] - shape.height) // 2),
                (shape.width + gap, (size[1] - label.height) // 2),
            )
        unit = Image.new("RGBA", size, (*color, 0))
        unit.alpha_composite(shape, spots[0])
        unit.alpha_composite(label, spots[1])
        position = _pick(rng, _CORNERS + ("random", "center"))
        return unit, text, position, float(rng.uniform(0.4, 1.0)), None

    def _caption(self, rng, frame):
        text = mark_text.caption(rng)
        fg = _pick(rng, _LIGHT + _DARK)
        bg = (0, 0, 0) if sum(fg) > 380 else (255, 255, 255)
        bg = _pick(rng, (bg, (30, 30, 90), (200, 200, 200))) if rng.random() < 0.3 else bg
        px = self._size(rng, frame, 0.04, 0.08)
        label = text_unit(text, str(_pick(rng, ("serif", "cjk"))), px, fg)
        pad = max(2, px // 3)
        band = rng.random() < 0.5  # a band across the whole width, else a box round the text
        width = frame[0] if band else label.width + 2 * pad
        unit = Image.new("RGBA", (width, label.height + 2 * pad), (*bg, 255))
        draw = ImageDraw.Draw(unit)
        border = int(rng.integers(0, 3))
        if border:
            draw.rectangle(
                (0, 0, unit.width - 1, unit.height - 1), outline=(*fg, 255), width=border
            )
        x = pad if not band else int(rng.integers(pad, max(pad + 1, width - label.width - pad)))
        unit.alpha_composite(label, (x, pad))
        position = _pick(rng, ("bottom", "top")) if band else _pick(rng, _CORNERS + ("random",))
        return unit, text, position, float(rng.uniform(0.7, 1.0)), None

    def describe(self) -> str:
        details = f"{self.family} mark" + (f" at {self.scale:g}x size" if self.scale != 1 else "")
        return f"{self.description}: {details}" if self.description else details

    def fill(self) -> tuple[RGB, float]:
        """A placebo box of a mark family is mid-grey at opacity 0.6 (colours vary per image)."""
        return (128, 128, 128), 0.6
