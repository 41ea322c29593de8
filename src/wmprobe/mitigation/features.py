"""Backbone features the mitigation needs, each from one cached pass.

- the probe set (e.g. the ImageNet samples): clean and each scenario, for ranking the units and
  for measuring the new head's output units;
- the downstream ImageFolder: clean (training and testing the head) and with each scenario drawn
  (the prediction flip rate).

Every image goes through the audit's pipeline (the 224x224 frame, then the model's own resize and
normalisation) and the audit's activation cache (:mod:`wmprobe.extraction.cache`): the feature
layer of a
probe set that an audit of the same model, images, scenarios and seed already extracted is read,
not recomputed; a killed pass resumes; two runs on one cache take turns.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wmprobe.constants import CLEAN, FEATURES
from wmprobe.extraction.activations import Activations, extract, require_readable
from wmprobe.extraction.cache import ActivationCache, default_cache_dir
from wmprobe.mitigation.downstream import ImageFolderSet, scan_image_folder
from wmprobe.models import LoadedModel
from wmprobe.probes.images import ImageRecord, scan_folder
from wmprobe.probes.scenario import Scenario, resolve_scenarios


def cached_features(
    model: LoadedModel,
    records: Sequence[ImageRecord],
    scenarios: Sequence[Scenario],
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    batch_size: int = 16,
    num_workers: int | None = None,
    progress: bool = True,
) -> tuple[Activations, dict]:
    """Feature-layer activations of ``records`` (clean and each scenario) through the activation
    cache at ``cache_dir`` (default: ``$WMPROBE_CACHE`` or ``~/.cache/wmprobe``).

    Returns the activations and a manifest: ``cached`` (nothing had to be computed), ``seconds``
    of this call, ``frames_computed``, ``images_used``, ``images_skipped`` and the cache ``path``.
    """
    store = ActivationCache(Path(cache_dir).expanduser() if cache_dir else default_cache_dir())
    start = time.perf_counter()
    acts = extract(
        model,
        records,
        scenarios,
        seed=seed,
        layers=(FEATURES,),
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
        cache=store,
    )
    require_readable(acts, len(records))
    manifest = {
        "cached": acts.frames_computed == 0,
        "seconds": round(time.perf_counter() - start, 3),
        "frames_computed": acts.frames_computed,
        "images_used": len(acts.image_ids),
        "images_skipped": acts.skipped,
        "path": str(store.root),
    }
    return acts, manifest


def probe_set_features(
    model: LoadedModel,
    images: str | Path,
    scenarios: Sequence[str | Scenario],
    *,
    seed: int = 0,
    keep_watermarked: bool = False,
    limit: int | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 16,
    num_workers: int | None = None,
    progress: bool = True,
) -> tuple[Activations, dict]:
    """Feature-layer activations of the probe set (clean + each scenario), as the audit makes them.

    The images are chosen as ``wmprobe audit`` chooses them (known watermarked samples left out).
    ``scenarios`` are names or :class:`Scenario` objects (see
    :func:`~wmprobe.probes.scenario.resolve_scenarios`). Returns the activations and the cache
    manifest.
    """
    probe_sets = resolve_scenarios(list(scenarios))
    image_set = scan_folder(images, keep_watermarked=keep_watermarked, limit=limit)
    return cached_features(
        model,
        image_set.records,
        probe_sets,
        seed=seed,
        cache_dir=cache_dir,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
    )


@dataclass
class DownstreamFeatures:
    """Backbone features of a downstream ImageFolder: clean and with each probe drawn.

    ``clean`` is ``[n_images, n_features]``; ``probes[scenario]`` the same images with that
    scenario's text drawn. Rows follow ``image_ids``; unreadable images are in ``skipped``.
    """

    root: Path
    classes: tuple[str, ...]
    image_ids: list[str]
    labels: np.ndarray
    clean: np.ndarray
    probes: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)


def per_class(records: Sequence[ImageRecord], limit: int | None) -> list[ImageRecord]:
    """The first ``limit`` records of each class (all of them when ``limit`` is None)."""
    if limit is None:
        return list(records)
    counts: dict[int, int] = {}
    kept = []
    for r in records:
        counts[r.label] = counts.get(r.label, 0) + 1
        if counts[r.label] <= limit:
            kept.append(r)
    return kept


def downstream_features(
    model: LoadedModel,
    folder: str | Path | ImageFolderSet,
    *,
    scenarios: Sequence[str | Scenario] = (),
    seed: int = 0,
    cache_dir: str | Path | None = None,
    limit_per_class: int | None = None,
    batch_size: int = 16,
    num_workers: int | None = None,
    progress: bool = True,
) -> DownstreamFeatures:
    """Backbone features of every image of an ImageFolder, cached on disk (one pass, then reads).

    ``folder``: a path, or an :class:`ImageFolderSet` already scanned. The cache is keyed by
    model + weights + the folder's files + scenarios + probe seed.
    ``limit_per_class`` keeps the first N images of each class (small runs and tests).
    """
    image_folder = folder if isinstance(folder, ImageFolderSet) else scan_image_folder(folder)
    records = per_class(image_folder.records, limit_per_class)
    probe_sets = resolve_scenarios(list(scenarios))
    acts, manifest = cached_features(
        model,
        records,
        probe_sets,
        seed=seed,
        cache_dir=cache_dir,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
    )
    return DownstreamFeatures(
        root=image_folder.root,
        classes=image_folder.classes,
        image_ids=acts.image_ids,
        labels=acts.labels,
        clean=acts.get(FEATURES, CLEAN),
        probes={s.name: acts.get(FEATURES, s.name) for s in probe_sets},
        skipped=acts.skipped,
        manifest=manifest,
    )
