"""The ImageNet-W watermark (Li et al. 2022, "A Whac-A-Mole Dilemma"), drawn by its own package.

The ``imagenet-w`` package (an optional extra: its LICENSE file is CC BY-NC 4.0, so wmprobe never
depends on it) adds a fixed Chinese text, "捷径捷径捷径", in white at half opacity, at 1 % of the
width and 40 % of the height, in Source Han Serif ExtraLight. Its transform is applied to the
224x224 crop, exactly as on our frame: ``AddWatermark(224)`` picks its 36 px font for that size.
Nothing is random; ``rng`` is not used.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageDraw

from wmprobe.errors import OptionalDependencyError
from wmprobe.probes.artifacts.base import RGB, Artifact, Drawn, check_range, parse_color

INSTALL_HINT = (
    "The imagenet_w scenario draws with the `imagenet-w` package, which is not installed. "
    "Install it with `pip install 'wmprobe[imagenet-w]'` (or `pip install imagenet-w`); "
    "note that its licence is CC BY-NC 4.0 (non-commercial)."
)


def _module() -> Any:
    try:
        import imagenet_w
    except ImportError as exc:
        raise OptionalDependencyError(INSTALL_HINT) from exc
    return imagenet_w


@functools.lru_cache(maxsize=8)
def _transform(image_size: int, text: str, opacity: float, color: RGB, x: float, y: float) -> Any:
    return _module().AddWatermark(
        image_size, text=text, opacity=opacity, color=color, x_pos=x, y_pos=y
    )


@dataclass(frozen=True)
class ImageNetWArtifact(Artifact):
    """The ImageNet-W text watermark, drawn by ``imagenet_w.AddWatermark`` on the frame.

    The transform is built for the frame's shorter side (224 for our frames, as the package is
    used on ImageNet's 224 crop); its defaults are ImageNet-W's.

    Example:
        >>> art, frame = ImageNetWArtifact(), Image.new("RGB", (224, 224))
        >>> drawn = art.draw(frame, np.random.default_rng(0))  # doctest: +SKIP
    """

    kind: ClassVar[str] = "imagenet_w"

    text: str = "捷径捷径捷径"
    opacity: float = 0.5
    color: RGB = (255, 255, 255)
    x_pos: float = 0.01
    y_pos: float = 0.4
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        check_range("opacity", self.opacity, 0.0, 1.0)
        check_range("x_pos", self.x_pos, 0.0, 1.0)
        check_range("y_pos", self.y_pos, 0.0, 1.0)
        object.__setattr__(self, "color", parse_color(self.color))
        for name in ("opacity", "x_pos", "y_pos"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def transform(self, image_size: int) -> Any:
        """The package's ``AddWatermark`` for an image of side ``image_size``."""
        return _transform(image_size, self.text, self.opacity, self.color, self.x_pos, self.y_pos)

    def draw(self, image: Image.Image, rng: np.random.Generator) -> Drawn:
        """Apply ImageNet-W's transform; the box is that of the text's ink at full opacity."""
        wm = self.transform(min(image.size))
        out = wm(image.convert("RGB"))
        mask = Image.new("L", image.size, 0)
        xy = (self.x_pos * image.size[0], self.y_pos * image.size[1])
        ImageDraw.Draw(mask).text(xy, self.text, font=wm.font, fill=255)
        return Drawn(image=out, text=self.text, bbox=mask.getbbox())

    def describe(self) -> str:
        if self.description:
            return self.description
        return (
            f"ImageNet-W: {self.text!r}, opacity {self.opacity:g}, at "
            f"({self.x_pos:g}, {self.y_pos:g}) of the frame (needs the imagenet-w package)"
        )

    def content(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return {"imagenet-w": version("imagenet-w")}
        except PackageNotFoundError as exc:
            raise OptionalDependencyError(INSTALL_HINT) from exc

    def check_ready(self) -> None:
        _module()

    def fill(self) -> tuple[RGB, float]:
        return self.color, self.opacity
