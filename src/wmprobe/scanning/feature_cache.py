"""Backbone features of synthetic pairs, computed once and kept on disk in resumable chunks.

A folder per (model, weights, layer, input size, seed, backgrounds) holds ``chunk-NNNNN.npz``
files (written atomically) and a ``key.json``; a rerun reads the chunks that exist and computes
only the missing ones, so training a detector again (other heads, other settings) costs no
backbone pass.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wmprobe.scanning.backbone import FeatureTap
from wmprobe.scanning.synthetic import make_pair

CHUNK = 32


def _digest(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(f"{part}\n".encode())
    return h.hexdigest()[:20]


def pair_features(
    paths: Sequence[str],
    tap: FeatureTap,
    *,
    size: int,
    grid: int,
    seed: int,
    cache_dir: str | Path,
    negative_share: float = 0.25,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Features of the clean and the marked side of every background's pair, and their targets.

    Returns ``clean`` and ``marked`` (float16 ``[n, C, G, G]``, or ``[n, C]`` for a pooled layer),
    ``cells`` (float32 ``[n, G, G]``), ``variant`` (str ``[n]``) and ``is_mark`` (bool ``[n]``).
    Unreadable backgrounds are left out.
    """
    model = tap.model
    folder = Path(cache_dir) / _digest(
        model.name, model.weights_hash(), tap.layer, size, grid, seed, negative_share
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "key.json").write_text(
        json.dumps(
            {
                "model": tap.model.name,
                "layer": tap.layer,
                "size": size,
                "grid": grid,
                "seed": seed,
                "negative_share": negative_share,
            }
        )
    )
    parts = []
    for start in range(0, len(paths), CHUNK):
        # a chunk is named by its backgrounds, so any number of them reuses what exists
        file = folder / f"chunk-{start // CHUNK:05d}-{_digest(*paths[start : start + CHUNK])}.npz"
        if not file.exists():
            _compute_chunk(paths, start, tap, size, grid, seed, negative_share, file)
        with np.load(file, allow_pickle=False) as data:
            parts.append({k: data[k] for k in data.files})
        if progress:
            print(f"  features: {min(start + CHUNK, len(paths))}/{len(paths)}", flush=True)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _compute_chunk(paths, start, tap, size, grid, seed, negative_share, file: Path) -> None:
    from wmprobe.errors import BadImageError

    pairs = []
    for index in range(start, min(start + CHUNK, len(paths))):
        try:
            pairs.append(
                make_pair(
                    paths[index],
                    index,
                    size=size,
                    grid=grid,
                    seed=seed,
                    negative_share=negative_share,
                )
            )
        except BadImageError:
            continue
    clean = tap(np.stack([p.clean for p in pairs])).numpy().astype(np.float16)
    marked = tap(np.stack([p.marked for p in pairs])).numpy().astype(np.float16)
    tmp = file.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(
        tmp,
        clean=clean,
        marked=marked,
        cells=np.stack([p.cells for p in pairs]),
        variant=np.array([p.variant for p in pairs]),
        is_mark=np.array([p.is_mark for p in pairs]),
    )
    os.replace(tmp, file)


def scenario_features(
    paths: Sequence[str],
    tap: FeatureTap,
    *,
    size: int,
    scenarios: Sequence[str],
    seed: int,
    cache_dir: str | Path,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Pooled features of every background's clean frame and of each scenario drawn on it.

    Returns ``clean`` and one array per scenario name, float32 ``[n, C]``; unreadable backgrounds
    are left out of all of them.
    """
    model = tap.model
    folder = Path(cache_dir) / _digest(
        "scenarios", model.name, model.weights_hash(), tap.layer, size, seed, *scenarios
    )
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for start in range(0, len(paths), CHUNK):
        file = folder / f"chunk-{start // CHUNK:05d}-{_digest(*paths[start : start + CHUNK])}.npz"
        if not file.exists():
            _scenario_chunk(paths, start, tap, size, scenarios, seed, file)
        with np.load(file, allow_pickle=False) as data:
            parts.append({k: data[k] for k in data.files})
        if progress:
            print(f"  features: {min(start + CHUNK, len(paths))}/{len(paths)}", flush=True)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _scenario_chunk(paths, start, tap, size, scenarios, seed, file: Path) -> None:
    from PIL import Image

    from wmprobe.errors import BadImageError
    from wmprobe.scanning.files import read_square
    from wmprobe.scanning.synthetic import artifact_of

    frames: dict[str, list[np.ndarray]] = {"clean": [], **{s: [] for s in scenarios}}
    for index in range(start, min(start + CHUNK, len(paths))):
        try:
            clean = read_square(paths[index], size)
        except BadImageError:
            continue
        frames["clean"].append(clean)
        for k, name in enumerate(scenarios):
            rng = np.random.default_rng([seed, index, k])
            drawn = artifact_of(name).draw(Image.fromarray(clean), rng).image
            frames[name].append(np.asarray(drawn, dtype=np.uint8))
    out = {k: tap(np.stack(v)).numpy().astype(np.float32) for k, v in frames.items()}
    tmp = file.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, **out)
    os.replace(tmp, file)
