"""Heatmap overlays: the clean frame, the probe, and a unit's map on each, with the drawn box.

The maps of one image (clean, probe, placebo) share one colour scale (:func:`shared_scale`), so
that a map that lights up only on the probe shows as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from wmprobe.attribution.scores import Box
from wmprobe.reporting.figures import image_grid_figure

BOX_COLOUR = (0, 255, 0)


@dataclass
class OverlayRow:
    """One image of a unit: frames (``clean``, probe, maybe placebo) and the map on each."""

    image_id: str
    box: Box
    frames: dict[str, np.ndarray]
    maps: dict[str, np.ndarray]


def shared_scale(maps: Sequence[np.ndarray], percentile: float = 99.5) -> float:
    """One colour scale for several maps: the largest of their ``percentile``-th positive values
    (a few extreme pixels, common in LRP and IG maps, would otherwise wash the rest out)."""
    levels = []
    for m in maps:
        pos = np.asarray(m, dtype=np.float64)
        pos = pos[pos > 0]
        if pos.size:
            levels.append(float(np.percentile(pos, percentile)))
    return max(levels) if levels else 0.0


def heat(frame: np.ndarray, relevance: np.ndarray, scale: float, box: Box | None) -> Image.Image:
    """``frame`` (uint8 ``[H, W, 3]``) blended with the positive part of ``relevance`` / ``scale``
    in the ``inferno`` colours, and ``box`` outlined."""
    pos = np.clip(np.asarray(relevance, dtype=np.float64), 0.0, None)
    level = pos / scale if scale > 0 else np.zeros_like(pos)
    colour = (colormaps["inferno"](np.clip(level, 0, 1))[..., :3] * 255).astype(np.float64)
    alpha = 0.25 + 0.6 * np.clip(level, 0, 1)[..., None]
    blended = (1 - alpha) * frame.astype(np.float64) * 0.6 + alpha * colour
    image = Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8))
    if box is not None:
        outline(image, box)
    return image


def outline(image: Image.Image, box: Box) -> Image.Image:
    """Draw ``box`` (right and bottom exclusive) on ``image`` in place."""
    left, top, right, bottom = box
    ImageDraw.Draw(image).rectangle((left, top, right - 1, bottom - 1), outline=BOX_COLOUR, width=2)
    return image


def overlay_figure(rows: Sequence[OverlayRow], title: str, scores: Sequence[str]) -> Figure:
    """One row per image: clean, its map, probe, its map (and placebo, its map); ``scores`` are
    captions for the probe map of each row (e.g. its mass)."""
    grid, captions = [], []
    for row, score in zip(rows, scores, strict=True):
        scale = shared_scale(list(row.maps.values()))
        cells, caps = [], []
        for variant, frame in row.frames.items():
            shown = Image.fromarray(frame)
            if variant != "clean":
                outline(shown, row.box)
            cells += [shown, heat(frame, row.maps[variant], scale, row.box)]
            name = variant if len(variant) < 16 else variant.split("+")[-1]
            caps += [f"{name} {row.image_id[:12]}", score if variant == "probe" else f"{name} map"]
        grid.append(cells)
        captions.append(caps)
    return image_grid_figure(grid, captions, title=title, cell=150)
