"""Image overlays: a picture with alpha (a logo, a stamp) laid on the frame."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from wmprobe._util import file_digest
from wmprobe.errors import ArtifactDoesNotFitError, ScenarioSpecError
from wmprobe.probes.artifacts.base import RGB, Artifact, Drawn, check_range
from wmprobe.probes.artifacts.layout import (
    RANDOM,
    Position,
    compose,
    parse_position,
    place,
    placement_words,
    rotate_unit,
)


@functools.lru_cache(maxsize=16)
def _read_overlay(path: str, mtime_ns: int) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGBA")
    except (OSError, UnidentifiedImageError) as exc:
        raise ScenarioSpecError(f"The overlay image {path!r} cannot be read: {exc}") from exc


@dataclass(frozen=True)
class ImageOverlay(Artifact):
    """A picture (PNG with alpha, or any image) scaled, placed and laid on the frame.

    Attributes:
        image: path of the picture; its alpha channel (if any) is kept.
        scale: the overlay's width as a fraction of the frame's width (aspect ratio kept).
        opacity: multiplies the picture's own alpha.
        position, margin, rotation, tile, tile_gap: as for :class:`TextArtifact`.

    Example:
        >>> logo = ImageOverlay("logo.png", scale=0.2, position="bottom-right")  # doctest: +SKIP
    """

    kind: ClassVar[str] = "image"

    image: str | Path = ""
    scale: float = 0.25
    opacity: float = 1.0
    position: Position = RANDOM
    margin: int = 0
    rotation: float = 0.0
    tile: bool = False
    tile_gap: int = 16
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        path = Path(self.image).expanduser()
        if not str(self.image) or not path.is_file():
            raise ScenarioSpecError(
                f"Expected argument `image` to be an image file but {str(self.image)!r} is none."
            )
        object.__setattr__(self, "image", path.resolve())
        check_range("scale", self.scale, 1e-3, 1.0)
        check_range("opacity", self.opacity, 0.0, 1.0)
        check_range("rotation", self.rotation, -360.0, 360.0)
        for name in ("margin", "tile_gap"):
            if not isinstance(getattr(self, name), int):
                raise ScenarioSpecError(
                    f"Expected argument `{name}` to be an integer but got {getattr(self, name)!r}"
                )
            check_range(name, getattr(self, name), 0)
        object.__setattr__(self, "position", parse_position(self.position))
        if not isinstance(self.tile, bool):
            raise ScenarioSpecError(
                f"Expected argument `tile` to be true or false but got {self.tile!r}"
            )
        for name in ("scale", "opacity", "rotation"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def picture(self) -> Image.Image:
        """The overlay as RGBA, at its own size."""
        path = Path(self.image)
        return _read_overlay(str(path), path.stat().st_mtime_ns)

    def unit(self, frame: tuple[int, int]) -> Image.Image:
        """The overlay as drawn on a ``frame`` (w, h) image: scaled and turned, before placing."""
        pic = self.picture()
        width = max(1, round(self.scale * frame[0]))
        height = max(1, round(pic.size[1] * width / pic.size[0]))
        if height > 4 * max(frame):  # never resampled: it cannot fit
            raise ArtifactDoesNotFitError(
                f"{self._what()} is {width}x{height} px and does not fit in a "
                f"{frame[0]}x{frame[1]} image; use a smaller scale."
            )
        unit = pic.convert("RGBa").resize((width, height), Image.Resampling.LANCZOS)
        return rotate_unit(unit.convert("RGBA"), self.rotation)

    def _what(self) -> str:
        return f"The overlay {Path(self.image).name!r} at scale {self.scale:g}"

    def check_fits(self, frame: tuple[int, int]) -> None:
        """Refuse an overlay that, scaled and turned, cannot fit on ``frame`` (as drawing would)."""
        unit = self.unit(frame)
        place(
            np.random.default_rng(0),
            unit.size,
            frame,
            self.position,
            self.margin,
            what=self._what(),
        )

    def draw(self, image: Image.Image, rng: np.random.Generator) -> Drawn:
        """Lay the overlay; a random position comes from ``rng`` (x, then y)."""
        unit = self.unit(image.size)
        origin = place(rng, unit.size, image.size, self.position, self.margin, what=self._what())
        placed = compose(
            image, unit, origin, self.opacity, tile_gap=self.tile_gap if self.tile else None
        )
        return Drawn(image=placed.image, text="", bbox=placed.bbox)

    def describe(self) -> str:
        if self.description:
            return self.description
        parts = [f"image {Path(self.image).name} at {self.scale:g} of the width"]
        parts += placement_words(
            self.opacity, self.position, self.rotation, self.tile, self.tile_gap
        )
        return ", ".join(parts)

    def content(self) -> dict[str, str]:
        return {"image": file_digest(self.image)}

    def check_ready(self) -> None:
        self.picture()

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["image"] = Path(self.image).name  # the bytes are in content(); paths differ by machine
        return out

    def fill(self) -> tuple[RGB, float]:
        """The alpha-weighted mean colour of the picture, and the opacity."""
        pixels = np.asarray(self.picture(), dtype=np.float64)
        weight = pixels[..., 3:] / 255.0
        total = max(float(weight.sum()), 1e-9)
        mean = (pixels[..., :3] * weight).sum(axis=(0, 1)) / total
        return (int(round(mean[0])), int(round(mean[1])), int(round(mean[2]))), self.opacity
