"""Where an artifact goes: positions, rotation and tiling, shared by text and image overlays.

An artifact is first rendered as a *unit*: a tight RGBA picture (colour and alpha) of its ink.
:func:`place` picks the unit's top-left corner, :func:`compose` lays it (or a grid of it) on
the frame with an opacity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from wmprobe.errors import ArtifactDoesNotFitError, ScenarioSpecError

Position = str | tuple[float, float]
"""``"random"`` (random and fully visible), a named place, or ``(fx, fy)`` in [0, 1]."""

RANDOM = "random"

#: Named positions as fractions of the free space: (0, 0) is flush top-left, (1, 1) bottom-right.
NAMED_POSITIONS: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5),
    "top-left": (0.0, 0.0),
    "top": (0.5, 0.0),
    "top-right": (1.0, 0.0),
    "left": (0.0, 0.5),
    "right": (1.0, 0.5),
    "bottom-left": (0.0, 1.0),
    "bottom": (0.5, 1.0),
    "bottom-right": (1.0, 1.0),
}


def parse_position(value: object) -> Position:
    """A checked position: ``"random"``, a name of :data:`NAMED_POSITIONS` or ``(fx, fy)``.

    Example:
        >>> parse_position([0.25, 1])
        (0.25, 1.0)
    """
    if isinstance(value, str):
        if value == RANDOM or value in NAMED_POSITIONS:
            return value
        raise ScenarioSpecError(
            f"Expected argument `position` to be 'random', one of {', '.join(NAMED_POSITIONS)} "
            f"or [x, y] fractions but got {value!r}"
        )
    if (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and all(0.0 <= v <= 1.0 for v in value)
    ):
        return (float(value[0]), float(value[1]))
    raise ScenarioSpecError(
        f"Expected argument `position` to be 'random', a named place or [x, y] with fractions "
        f"in [0, 1] but got {value!r}"
    )


def position_label(position: Position) -> str:
    """A short label of a position, for names: ``random``, ``top-left``, ``0.25x1``."""
    if isinstance(position, str):
        return position
    return "x".join(format(v, "g") for v in position)


def placement_words(
    opacity: float, position: Position, rotation: float, tile: bool, tile_gap: int
) -> list[str]:
    """How an artifact is laid on the frame, in words, for ``describe()`` (defaults left out).

    Example:
        >>> placement_words(0.5, "top-left", 30, True, 24)
        ['opacity 0.5', 'at top-left', 'rotated 30 deg', 'tiled 24px apart']
    """
    words = []
    if opacity < 1:
        words.append(f"opacity {opacity:g}")
    if position != RANDOM:
        words.append(f"at {position_label(position)}")
    if rotation:
        words.append(f"rotated {rotation:g} deg")
    if tile:
        words.append(f"tiled {tile_gap}px apart")
    return words


def place(
    rng: np.random.Generator,
    unit_size: tuple[int, int],
    frame_size: tuple[int, int],
    position: Position,
    margin: int = 0,
    *,
    what: str = "The artifact",
) -> tuple[int, int]:
    """The top-left corner of a ``unit_size`` box, wholly inside the frame and ``margin`` from it.

    ``random`` draws x then y uniformly over every fully visible place (one integer each from
    ``rng``); fractions place the box in the free space: 0 flush left/top, 1 flush right/bottom.
    """
    w, h = unit_size
    width, height = frame_size
    free_w, free_h = width - w - 2 * margin, height - h - 2 * margin
    if free_w < 0 or free_h < 0:
        raise ArtifactDoesNotFitError(
            f"{what} is {w}x{h} px and does not fit in a {width}x{height} image"
            + (f" with a {margin} px margin" if margin else "")
            + "; use a smaller size or a larger image."
        )
    if position == RANDOM:
        return margin + int(rng.integers(0, free_w + 1)), margin + int(rng.integers(0, free_h + 1))
    fx, fy = NAMED_POSITIONS[position] if isinstance(position, str) else position
    return margin + round(fx * free_w), margin + round(fy * free_h)


def rotate_unit(unit: Image.Image, degrees: float) -> Image.Image:
    """An RGBA unit turned ``degrees`` counter-clockwise (bicubic, premultiplied), ink-cropped."""
    if degrees % 360 == 0:
        return unit
    turned = unit.convert("RGBa").rotate(degrees, Image.Resampling.BICUBIC, expand=True)
    turned = turned.convert("RGBA")
    box = turned.getchannel("A").getbbox()
    return turned.crop(box) if box else turned


@dataclass(frozen=True)
class Placed:
    """An artifact laid on a frame: the result and the box of its ink (at full opacity)."""

    image: Image.Image
    bbox: tuple[int, int, int, int] | None


def compose(
    image: Image.Image,
    unit: Image.Image,
    origin: tuple[int, int],
    opacity: float,
    *,
    tile_gap: int | None = None,
) -> Placed:
    """Lay the RGBA ``unit`` on ``image`` at ``origin`` (or a grid through it) with ``opacity``.

    With ``tile_gap`` the unit repeats over the whole frame, ``tile_gap`` px apart, on the grid
    through ``origin``; tiles at the edges are cut off.
    """
    size = image.size
    layer = Image.new("RGB", size)
    alpha = Image.new("L", size, 0)
    color, unit_alpha = unit.convert("RGB"), unit.getchannel("A")
    for x, y in _origins(origin, unit.size, size, tile_gap):
        layer.paste(color, (x, y))
        alpha.paste(unit_alpha, (x, y))
    bbox = alpha.getbbox()
    if opacity < 1.0:
        alpha = alpha.point(lambda v: round(v * opacity))
    out = image.convert("RGB").copy()
    out.paste(layer, (0, 0), alpha)
    return Placed(image=out, bbox=bbox)


def _origins(
    origin: tuple[int, int],
    unit_size: tuple[int, int],
    frame_size: tuple[int, int],
    tile_gap: int | None,
) -> list[tuple[int, int]]:
    if tile_gap is None:
        return [origin]
    pitch_x, pitch_y = unit_size[0] + tile_gap, unit_size[1] + tile_gap
    x0 = origin[0] - pitch_x * ((origin[0] + unit_size[0]) // pitch_x + 1)
    y0 = origin[1] - pitch_y * ((origin[1] + unit_size[1]) // pitch_y + 1)
    xs = range(x0, frame_size[0], pitch_x)
    ys = range(y0, frame_size[1], pitch_y)
    return [(x, y) for y in ys for x in xs if x + unit_size[0] > 0 and y + unit_size[1] > 0]
