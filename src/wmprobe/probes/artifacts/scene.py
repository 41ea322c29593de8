"""Hard negatives for a mark detector: text printed into the scene, and occlusions without text.

``scene_text`` draws a sign or label that belongs to the scene: text (often on a plate) seen in
perspective, its colour modulated by the surface's own shading, slightly blurred and noisy, as a
camera records printed text. ``placebo_shapes`` lays one to three plain shapes (no text) on the
frame. Neither is an overlay: a detector should score both as clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from PIL import Image, ImageFilter

from wmprobe.errors import ScenarioSpecError
from wmprobe.probes.artifacts import mark_text
from wmprobe.probes.artifacts.base import RGB, Artifact, Drawn
from wmprobe.probes.artifacts.layout import place
from wmprobe.probes.artifacts.marks import _pick, fit_unit, shape_unit, text_unit

SCENE_KINDS = ("scene_text", "placebo_shapes")


def _perspective_coeffs(src: list[tuple[float, float]], dst: list[tuple[float, float]]) -> list:
    """PIL's PERSPECTIVE coefficients mapping output points ``dst`` to input points ``src``."""
    rows = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    a = np.asarray(rows, dtype=np.float64)
    b = np.asarray([c for point in src for c in point], dtype=np.float64)
    return np.linalg.solve(a, b).tolist()


@dataclass(frozen=True)
class SceneArtifact(Artifact):
    """A hard negative: ``scene_text`` (a sign in perspective) or ``placebo_shapes`` (no text).

    Example:
        >>> art = SceneArtifact("scene_text")
        >>> drawn = art.draw(Image.new("RGB", (224, 224), (90, 120, 60)), np.random.default_rng(0))
        >>> drawn.bbox is not None and drawn.bbox[2] <= 224
        True
    """

    kind: ClassVar[str] = "scene"

    variant: str
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.variant not in SCENE_KINDS:
            raise ScenarioSpecError(
                f"Expected argument `variant` to be one of {', '.join(SCENE_KINDS)} "
                f"but got {self.variant!r}"
            )

    def draw(self, image: Image.Image, rng: np.random.Generator) -> Drawn:
        if self.variant == "scene_text":
            return self._scene_text(image.convert("RGB"), rng)
        return self._shapes(image.convert("RGB"), rng)

    def _scene_text(self, image: Image.Image, rng: np.random.Generator) -> Drawn:
        frame = image.size
        text = mark_text.caption(rng) if rng.random() < 0.5 else mark_text.agency(rng)
        fg: RGB = _pick(rng, ((20, 20, 20), (240, 240, 240), (200, 30, 30), (20, 60, 160)))
        px = max(8, round(float(rng.uniform(0.06, 0.16)) * min(frame)))
        unit = text_unit(text, str(_pick(rng, ("serif", "cjk"))), px, fg)
        pad = max(2, px // 3)
        if rng.random() < 0.7:  # a plate (sign, label, packaging) under the text
            plate_color = _pick(rng, ((230, 230, 220), (250, 210, 40), (30, 90, 40), (40, 40, 40)))
            plate = Image.new(
                "RGBA", (unit.width + 2 * pad, unit.height + 2 * pad), (*plate_color, 255)
            )
            plate.alpha_composite(unit, (pad, pad))
            unit = plate
        w, h = unit.size
        j = 0.25  # perspective: each corner moves by up to j of the size
        dst = [
            (rng.uniform(0, j) * w, rng.uniform(0, j) * h),
            (w * (1 + j) - rng.uniform(0, j) * w, rng.uniform(0, j) * h),
            (w * (1 + j) - rng.uniform(0, j) * w, h * (1 + j) - rng.uniform(0, j) * h),
            (rng.uniform(0, j) * w, h * (1 + j) - rng.uniform(0, j) * h),
        ]
        src = [(0, 0), (w, 0), (w, h), (0, h)]
        out_size = (round(w * (1 + j)) + 1, round(h * (1 + j)) + 1)
        coeffs = _perspective_coeffs(src, dst)
        warped = unit.convert("RGBa").transform(
            out_size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC
        )
        warped = warped.convert("RGBA")
        warped = warped.rotate(float(rng.uniform(-15, 15)), Image.Resampling.BICUBIC, expand=True)
        box = warped.getchannel("A").getbbox()
        warped = fit_unit(warped.crop(box) if box else warped, frame, 2)
        x, y = place(rng, warped.size, frame, "random", 2, what="The scene text")
        region = image.crop((x, y, x + warped.width, y + warped.height))
        shade = np.asarray(region.convert("L").filter(ImageFilter.GaussianBlur(3)), np.float32)
        shade = 0.55 + 0.45 * shade / max(1.0, float(shade.max()))  # the surface's own lighting
        ink = np.asarray(warped.convert("RGB"), np.float32) * shade[..., None]
        ink += rng.normal(0, 6, size=ink.shape).astype(np.float32)
        alpha = np.asarray(warped.getchannel("A"), np.float32) / 255.0
        blended = np.asarray(region, np.float32) * (1 - alpha[..., None]) + ink * alpha[..., None]
        patch = Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8), "RGB")
        patch = patch.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.4, 1.1))))
        mask = warped.getchannel("A").filter(ImageFilter.MaxFilter(3))
        out = image.copy()
        out.paste(patch, (x, y), mask)
        ink_box = mask.getbbox()
        bbox = (
            None
            if ink_box is None
            else (x + ink_box[0], y + ink_box[1], x + ink_box[2], y + ink_box[3])
        )
        return Drawn(image=out, text=text, bbox=bbox)

    def _shapes(self, image: Image.Image, rng: np.random.Generator) -> Drawn:
        frame = image.size
        out = image.copy()
        boxes = []
        for _ in range(int(rng.integers(1, 4))):
            color: RGB = tuple(int(c) for c in rng.integers(0, 256, size=3))  # type: ignore[assignment]
            side = max(6, round(float(rng.uniform(0.06, 0.25)) * min(frame)))
            unit = shape_unit(rng, side, color)
            if rng.random() < 0.5:  # stretched into a bar or blob
                unit = unit.resize((side, max(3, round(side * float(rng.uniform(0.2, 0.8))))))
            x, y = place(rng, unit.size, frame, "random", 0, what="The placebo shape")
            opacity = float(rng.uniform(0.4, 1.0))
            alpha = unit.getchannel("A").point(lambda v, o=opacity: round(v * o))
            out.paste(unit.convert("RGB"), (x, y), alpha)
            boxes.append((x, y, x + unit.width, y + unit.height))
        bbox = (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
        return Drawn(image=out, text="", bbox=bbox)

    def describe(self) -> str:
        what = {
            "scene_text": "text printed into the scene (a sign in perspective, shaded, blurred)",
            "placebo_shapes": "one to three plain shapes, no text",
        }[self.variant]
        details = f"hard negative: {what}"
        return f"{self.description}: {details}" if self.description else details

    def fill(self) -> tuple[RGB, float]:
        """A placebo box of a hard negative is mid-grey at opacity 0.6."""
        return (128, 128, 128), 0.6
