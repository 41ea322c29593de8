"""Synthetic training data for mark detectors: clean frames beside the same frames with a mark.

Every background image gives a pair: its clean square frame, and the frame with one mark family
drawn on it (or, for a share of the pairs, a hard negative: text printed into the scene, plain
shapes, or a placebo box; those count as clean). Both sides are JPEG-encoded at the same random
quality, as real photos are. The per-location target is the share of each cell of the detector's
feature grid that the mark changed, so the exact drawn region is the target, not a box around it.
All randomness comes from (seed, background index): the same seed gives the same pairs.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from wmprobe.probes.artifacts.base import Artifact
from wmprobe.probes.artifacts.marks import MARK_FAMILIES
from wmprobe.probes.artifacts.placebo import PlaceboArtifact
from wmprobe.probes.artifacts.presets import PAPER_SCENARIOS, PRESETS
from wmprobe.probes.artifacts.scene import SCENE_KINDS
from wmprobe.probes.images import FRAME_SIZE
from wmprobe.scanning.files import read_square

#: The mark families a learned detector is trained on (its family head's classes, in order).
TRAIN_FAMILIES: tuple[str, ...] = PAPER_SCENARIOS + MARK_FAMILIES
#: Hard negatives (scored as clean): scene text, plain shapes, a placebo box of Latin text.
HARD_NEGATIVES: tuple[str, ...] = SCENE_KINDS + ("latin+placebo_box",)
#: A pixel counts as marked when a channel moved by more than this (0-255).
CHANGED = 6
#: A cell is a positive location when at least this share of its pixels was marked.
CELL_SHARE = 0.02


def artifact_of(name: str) -> Artifact:
    """The artifact of a family or hard-negative name (``NAME+placebo_box`` included).

    The paper's scripts (30 px on its 224 px frame) are drawn at the same share of any frame.
    """
    if name.endswith("+placebo_box"):
        return PlaceboArtifact(artifact_of(name.split("+")[0]), "box")
    art = PRESETS[name]
    if name in PAPER_SCENARIOS:
        return dataclasses.replace(art, relative_size=30 / FRAME_SIZE)  # type: ignore[type-var]
    return art


@dataclass(frozen=True)
class Pair:
    """A clean frame, the same frame with ``variant`` drawn, and per-cell marked shares."""

    clean: np.ndarray  # uint8 [S, S, 3]
    marked: np.ndarray  # uint8 [S, S, 3]
    cells: np.ndarray  # float32 [G, G]: share of each cell's pixels the variant changed
    variant: str
    is_mark: bool


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def cell_shares(clean: np.ndarray, marked: np.ndarray, grid: int) -> np.ndarray:
    """The share of each of ``grid`` x ``grid`` cells whose pixels ``marked`` changed."""
    changed = np.abs(marked.astype(np.int16) - clean.astype(np.int16)).max(-1) > CHANGED
    size = clean.shape[0]
    edges = np.linspace(0, size, grid + 1).round().astype(int)
    out = np.zeros((grid, grid), np.float32)
    for i in range(grid):
        for j in range(grid):
            block = changed[edges[i] : edges[i + 1], edges[j] : edges[j + 1]]
            out[i, j] = block.mean() if block.size else 0.0
    return out


def make_pair(
    path: str,
    index: int,
    *,
    size: int,
    grid: int,
    seed: int,
    negative_share: float = 0.25,
    families: Sequence[str] = TRAIN_FAMILIES,
    negatives: Sequence[str] = HARD_NEGATIVES,
) -> Pair:
    """The training pair of background ``index`` (its randomness: ``(seed, index)`` only)."""
    rng = np.random.default_rng([seed, index])
    clean = read_square(path, size)
    is_mark = bool(rng.random() >= negative_share)
    options = families if is_mark else negatives
    variant = options[int(rng.integers(0, len(options)))]
    drawn = artifact_of(variant).draw(Image.fromarray(clean), rng).image
    marked = np.asarray(drawn, dtype=np.uint8)
    cells = cell_shares(clean, marked, grid)
    quality = int(rng.integers(60, 96))
    return Pair(_jpeg(clean, quality), _jpeg(marked, quality), cells, variant, is_mark)
