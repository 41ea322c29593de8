"""``wmprobe detector train``: a detector from synthetic marks drawn on your own clean images.

Backgrounds are a seeded sample of the images under a folder (streamed; files named in an
``exclude`` label file are never used, so labelled evaluation images stay out of training). The
last ``calibration_share`` of them never trains anything: their clean frames give the scores the
threshold is read from (:meth:`Detector.threshold`), and for a ``map`` detector their marked
frames give the synthetic held-out recall per family stored in the detector's ``info``.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import time
from pathlib import Path

import numpy as np

from wmprobe.errors import InvalidArgumentError
from wmprobe.probes.artifacts.presets import PAPER_SCENARIOS
from wmprobe.scanning.backbone import FEATURES, FeatureTap
from wmprobe.scanning.detector import KINDS, Detector
from wmprobe.scanning.files import iter_images
from wmprobe.scanning.synthetic import HARD_NEGATIVES, TRAIN_FAMILIES

#: The defaults of the packaged ``default`` detector.
MAP_DEFAULTS = {"model": "efficientnet_lite0", "layer": "_blocks.10", "input_size": 320}
LINEAR_SCENARIOS = ("chinese", "latin")


def sample_backgrounds(
    images: str | Path, n: int, *, seed: int = 0, exclude: set[str] | None = None
) -> list[str]:
    """A seeded sample of ``n`` image paths under ``images``: the ``n`` whose relative paths have
    the
    smallest seeded hash, in that order (one streamed pass, ``n`` paths in memory, the same sample
    whatever order the folder is walked in); relative paths in ``exclude`` are skipped."""
    root = os.fspath(Path(images).expanduser()).rstrip(os.sep)
    heap: list[tuple[int, str]] = []  # max-heap by negated hash: the n smallest hashes
    for path in iter_images(root):
        rel = path[len(root) + 1 :]
        if exclude and rel in exclude:
            continue
        h = int.from_bytes(hashlib.blake2b(f"{seed}|{rel}".encode(), digest_size=8).digest(), "big")
        if len(heap) < n:
            heapq.heappush(heap, (-h, path))
        elif -heap[0][0] > h:
            heapq.heapreplace(heap, (-h, path))
    return [p for _, p in sorted(heap, reverse=True)]


def train_detector(
    images: str | Path,
    out: str | Path,
    *,
    kind: str = "map",
    model: str | None = None,
    layer: str | None = None,
    input_size: int | None = None,
    backgrounds: int = 1200,
    calibration_share: float = 0.2,
    exclude: str | Path | None = None,
    epochs: int = 12,
    hidden: int = 32,
    units: int = 32,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    command: str = "",
    progress: bool = False,
) -> Detector:
    """Train a ``kind`` detector on synthetic marks over backgrounds from ``images``; save it."""
    from wmprobe.extraction.cache import default_cache_dir
    from wmprobe.scanning.evaluation import read_labels
    from wmprobe.scanning.feature_cache import pair_features, scenario_features

    if kind not in KINDS:
        raise InvalidArgumentError(
            f"Expected argument `kind` to be one of {', '.join(KINDS)} but got {kind!r}"
        )
    if not 0 < calibration_share < 1:
        raise InvalidArgumentError(
            f"Expected argument `calibration_share` in (0, 1) but got {calibration_share}"
        )
    started = time.perf_counter()
    skip = set(read_labels(exclude)["file"]) if exclude else None
    paths = sample_backgrounds(images, backgrounds, seed=seed, exclude=skip)
    n_cal = max(1, round(len(paths) * calibration_share))
    if len(paths) - n_cal < 8:
        raise InvalidArgumentError(
            f"Expected at least {8 + n_cal} background images under {str(images)!r} but found "
            f"{len(paths)}."
        )
    cache = Path(cache_dir) if cache_dir else Path(default_cache_dir()) / "scan-training"
    model = model or MAP_DEFAULTS["model"]
    info = {
        "backgrounds": len(paths),
        "calibration_images": n_cal,
        "seed": seed,
        "command": command,
    }
    if kind == "map":
        layer = layer or MAP_DEFAULTS["layer"]
        input_size = input_size or MAP_DEFAULTS["input_size"]
        tap = FeatureTap(model, layer, device=device)
        probe = tap(np.zeros((1, input_size, input_size, 3), np.uint8))
        grid = int(probe.shape[-1])
        data = pair_features(
            paths, tap, size=input_size, grid=grid, seed=seed, cache_dir=cache, progress=progress
        )
        n_train = len(data["is_mark"]) - n_cal
        train = {k: v[:n_train] for k, v in data.items()}
        held = {k: v[n_train:] for k, v in data.items()}
        from wmprobe.scanning.training import map_scores, train_map_head

        head = train_map_head(
            train, TRAIN_FAMILIES, hidden=hidden, epochs=epochs, seed=seed, progress=progress
        )
        calibration = map_scores(head, held["clean"])
        info.update(
            grid=grid,
            families_trained=list(TRAIN_FAMILIES),
            hard_negatives=list(HARD_NEGATIVES),
            heldout=_heldout(calibration, map_scores(head, held["marked"]), held),
        )
        state = {k: v.detach().clone() for k, v in head.state_dict().items()}
        det = Detector(
            "map", model, layer, input_size, state, TRAIN_FAMILIES, hidden, calibration, info
        )
    else:
        input_size = input_size or 224
        tap = FeatureTap(model, FEATURES, device=device)
        scenarios = LINEAR_SCENARIOS if kind == "linear" else PAPER_SCENARIOS
        data = scenario_features(  # all four scripts: the linear and units kinds share a cache
            paths,
            tap,
            size=input_size,
            scenarios=PAPER_SCENARIOS,
            seed=seed,
            cache_dir=cache,
            progress=progress,
        )
        n_train = len(data["clean"]) - n_cal
        from wmprobe.scanning.training import linear_probe, sensitive_units

        probes = [data[s][:n_train] for s in scenarios]
        if kind == "linear":
            state = linear_probe(data["clean"][:n_train], probes)
        else:
            state = sensitive_units(data["clean"][:n_train], probes, k=units)
        info.update(scenarios=list(scenarios))
        det = Detector(kind, model, FEATURES, input_size, state, (), 0, np.zeros(0), info)
        det.calibration = det.score(_tensor(data["clean"][n_train:])).score
    det.info["train_seconds"] = round(time.perf_counter() - started, 1)
    det.save(out)
    return det


def _tensor(x: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x))


def _heldout(clean: np.ndarray, marked: np.ndarray, held: dict[str, np.ndarray]) -> dict:
    """Synthetic held-out figures: AUROC of clean vs each family's marked frames, and the recall at
    the 1% false-positive threshold of the held-out clean frames."""
    from wmprobe.stats.core import auc

    t = float(np.sort(clean)[int(np.ceil(0.99 * len(clean))) - 1])
    out = {}
    for variant in sorted(set(held["variant"].tolist())):
        sel = held["variant"] == variant
        s = marked[sel]
        out[variant] = {
            "n": int(sel.sum()),
            "auroc": float(auc(clean, s)[0]),
            "flagged_at_fpr_0.01": float(np.mean(s > t)),
        }
    return out
