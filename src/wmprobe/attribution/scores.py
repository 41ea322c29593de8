"""Scores of an attribution map against the box of the drawn mark: the functional core.

Every function takes a map ``[H, W]`` (or a stack ``[B, H, W]``) and a box ``(left, top, right,
bottom)`` in the map's pixels (right and bottom exclusive, as :class:`~wmprobe.probes.artifacts.
base.Drawn` gives it). Only positive relevance counts: a map is read as evidence *for* the unit.

- ``mass``: positive relevance inside the box over all positive relevance (Arras et al. 2022,
  "relevance mass accuracy"); NaN when the map has no positive relevance at all.
- ``rank accuracy``: of the ``k`` pixels with the highest relevance (``k`` = the box's pixel
  count), the share with positive relevance inside the box ("relevance rank accuracy"; pixels at
  zero never count, so a map that lights up only the ink scores the ink's share of the box); NaN
  for a map without positive relevance.
- ``hit`` (pointing game, Zhang et al. 2018): whether the pixel of highest relevance is inside the
  box, exactly (no tolerance margin); a map without positive relevance does not hit.
- ``chance``: box area over image area, the expected value of all three for a map that carries
  no information about where the box is.
- ``iou``: NetDissect's score (Bau et al. 2017): the map thresholded at a given value, intersection
  over union with the box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wmprobe.errors import InvalidArgumentError

Box = tuple[int, int, int, int]


def box_mask(shape: tuple[int, int], box: Box) -> np.ndarray:
    """A boolean ``[H, W]`` mask of ``box`` (clipped to the image).

    Example:
        >>> int(box_mask((4, 6), (1, 0, 3, 2)).sum())
        4
    """
    h, w = shape
    left, top, right, bottom = (int(v) for v in box)
    if right <= left or bottom <= top:
        raise InvalidArgumentError(
            f"Expected a box with right > left and bottom > top but got {box}"
        )
    mask = np.zeros((h, w), dtype=bool)
    mask[max(top, 0) : min(bottom, h), max(left, 0) : min(right, w)] = True
    if not mask.any():
        raise InvalidArgumentError(f"Expected a box inside the {w}x{h} image but got {box}")
    return mask


def chance(shape: tuple[int, int], box: Box) -> float:
    """Box area over image area: the chance level of mass, rank accuracy and the pointing game."""
    return float(box_mask(shape, box).mean())


@dataclass(frozen=True)
class BoxScores:
    """The scores of one map against one box."""

    mass: float
    rank_accuracy: float
    hit: bool
    chance: float


def score_map(relevance: np.ndarray, box: Box) -> BoxScores:
    """Mass, rank accuracy, pointing-game hit and chance of one ``[H, W]`` map against ``box``.

    Example:
        >>> m = np.zeros((10, 10)); m[2:4, 2:4] = 1.0
        >>> s = score_map(m, (2, 2, 4, 4))
        >>> s.mass, s.rank_accuracy, s.hit, s.chance
        (1.0, 1.0, True, 0.04)
    """
    rel = np.asarray(relevance, dtype=np.float64)
    if rel.ndim != 2:
        raise InvalidArgumentError(f"Expected a map of shape [H, W] but got {rel.shape}")
    if not np.isfinite(rel).all():
        raise InvalidArgumentError("Expected a finite attribution map but it holds NaN or inf")
    mask = box_mask(rel.shape, box)
    pos = np.clip(rel, 0.0, None)
    total = pos.sum()
    mass = float(pos[mask].sum() / total) if total > 0 else float("nan")
    k = int(mask.sum())
    flat = rel.ravel()
    top = np.argpartition(-flat, k - 1)[:k] if k < flat.size else np.arange(flat.size)
    in_box = mask.ravel()[top] & (flat[top] > 0)  # ties at zero or below never count
    rank = float(in_box.mean()) if total > 0 else float("nan")
    hit = bool(total > 0 and mask.ravel()[int(np.argmax(flat))])
    return BoxScores(mass=mass, rank_accuracy=rank, hit=hit, chance=float(mask.mean()))


def top_quantile_threshold(maps: np.ndarray, quantile: float = 0.005) -> float:
    """The value that the top ``quantile`` of all pixels of ``maps`` exceed (NetDissect: 0.005)."""
    if not 0.0 < quantile < 1.0:
        raise InvalidArgumentError(
            f"Expected argument `quantile` to be in (0, 1) but got {quantile}"
        )
    return float(np.quantile(np.asarray(maps, dtype=np.float64), 1.0 - quantile))


def iou(activation: np.ndarray, box: Box, threshold: float) -> float:
    """Intersection over union of ``activation > threshold`` with ``box``."""
    region = np.asarray(activation) > threshold
    mask = box_mask(region.shape, box)
    union = np.logical_or(region, mask).sum()
    return float(np.logical_and(region, mask).sum() / union) if union else 0.0
