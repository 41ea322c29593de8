"""The audit: probe sets -> activations -> AUC and d per unit -> tables and a summary."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from .activations import CLEAN, LAYERS, Activations, extract
from .artifacts import PAPER_SCENARIOS
from .cache import ActivationCache
from .images import ImageSet, scan_folder
from .models import load_model
from .probes import Scenario
from .stats import auc, differentiability

#: The paper's thresholds on d.
THRESHOLDS = (0.7, 0.8, 0.9, 0.95)

TABLE_COLUMNS = ["model", "layer", "scenario", "unit", "class_name", "auc", "d"]


@dataclass
class AuditResult:
    """What an audit found for one model: the per-unit table and what it was computed on."""

    model: str
    table: pd.DataFrame
    activations: Activations
    images: ImageSet
    config: dict = field(default_factory=dict)
    seconds: float = 0.0

    def counts(self, thresholds: Sequence[float] = THRESHOLDS) -> pd.DataFrame:
        """Per scenario and layer: the number of units and how many have d above each threshold."""
        rows = []
        for (scenario, layer), group in self.table.groupby(["scenario", "layer"], sort=False):
            row = {"scenario": scenario, "layer": layer, "units": len(group)}
            for t in thresholds:
                row[f"d>{t}"] = int((group["d"] > t).sum())
            row["max_d"] = float(group["d"].max())
            rows.append(row)
        return pd.DataFrame(rows)

    def top_classes(self, k: int = 5) -> pd.DataFrame:
        """Per scenario, the ``k`` logit classes with the highest AUC (raised most by the text)."""
        logits = self.table[self.table["layer"] == "logits"]
        top = logits.sort_values(["scenario", "auc"], ascending=[True, False], kind="stable")
        top = top.groupby("scenario", sort=False).head(k)
        order = {s: i for i, s in enumerate(self.config.get("scenarios", []))}
        top = top.assign(_o=top["scenario"].map(order)).sort_values(["_o", "auc"], ascending=[1, 0])
        return top[["scenario", "unit", "class_name", "auc"]].reset_index(drop=True)

    def accuracy(self) -> pd.DataFrame | None:
        """Top-1 accuracy on clean and on each probe set, where labels are known."""
        if "logits" not in self.activations.values or (self.activations.labels < 0).any():
            return None
        labels = self.activations.labels
        rows = []
        for variant in self.activations.variants:
            pred = self.activations.get("logits", variant).argmax(axis=1)
            rows.append({"variant": variant, "top1": float((pred == labels).mean())})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """The text summary that ``wmprobe audit`` prints."""
        from .summary import format_summary

        return format_summary(self)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write units.parquet, units.csv, counts.csv, summary.txt and run.json to ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "units.parquet": out / "units.parquet",
            "units.csv": out / "units.csv",
            "counts.csv": out / "counts.csv",
            "summary.txt": out / "summary.txt",
            "run.json": out / "run.json",
        }
        _atomic_write(paths["units.parquet"], lambda p: self.table.to_parquet(p, index=False))
        _atomic_write(paths["units.csv"], lambda p: self.table.to_csv(p, index=False))
        _atomic_write(paths["counts.csv"], lambda p: self.counts().to_csv(p, index=False))
        _atomic_write(paths["summary.txt"], lambda p: Path(p).write_text(self.summary() + "\n"))
        manifest = {
            **self.config,
            "wmprobe_version": __version__,
            "python": platform.python_version(),
            "images_used": len(self.activations.image_ids),
            "images_excluded": self.images.excluded,
            "images_skipped": self.activations.skipped,
            "seconds": round(self.seconds, 2),
        }
        _atomic_write(
            paths["run.json"], lambda p: Path(p).write_text(json.dumps(manifest, indent=2))
        )
        return paths


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.replace(path)


#: Elements (images x units) of one block of the unit table: bounds its memory (~32 MiB float64).
BLOCK_ELEMENTS = 4_000_000


def unit_table(acts: Activations, class_names: Sequence[str]) -> pd.DataFrame:
    """The per-unit table: AUC and d of every unit of every layer for every scenario.

    Units are taken in blocks (read from the cache when there is one), so memory does not grow
    with the number of units times images.
    """
    frames = []
    n = max(1, len(acts.image_ids))
    step = max(1, BLOCK_ELEMENTS // n)
    for layer in acts.values:
        total = acts.units(layer)
        aucs: dict[str, list[np.ndarray]] = {s: [] for s in acts.variants[1:]}
        for start in range(0, total, step):
            stop = min(total, start + step)
            clean = acts.block(layer, CLEAN, start, stop)
            for scenario in acts.variants[1:]:
                aucs[scenario].append(auc(clean, acts.block(layer, scenario, start, stop)))
        for scenario in acts.variants[1:]:
            a = np.concatenate(aucs[scenario]) if aucs[scenario] else np.zeros(0)
            units = np.arange(a.shape[0])
            names = [class_names[u] for u in units] if layer == "logits" else [""] * len(units)
            frames.append(
                pd.DataFrame(
                    {
                        "model": acts.model,
                        "layer": layer,
                        "scenario": scenario,
                        "unit": units,
                        "class_name": names,
                        "auc": a,
                        "d": differentiability(a),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)[TABLE_COLUMNS]


def _cache(cache: bool | str | Path | ActivationCache | None) -> ActivationCache | None:
    if cache is True:
        return ActivationCache()
    if cache is False or cache is None:
        return None
    if isinstance(cache, ActivationCache):
        return cache
    return ActivationCache(cache)


def audit(
    images: str | Path | ImageSet,
    *,
    model: str = "efficientnet_lite0",
    scenarios: Sequence[str] = PAPER_SCENARIOS,
    layers: Sequence[str] = LAYERS,
    seed: int = 0,
    limit: int | None = None,
    keep_watermarked: bool = False,
    pretrained: bool = True,
    device: str = "auto",
    allow_download: bool = False,
    batch_size: int = 16,
    num_workers: int | None = None,
    progress: bool = True,
    cache: bool | str | Path | ActivationCache = True,
    reduction: str = "mean",
    dtype: str = "float32",
    jpeg_quality: int | None = None,
    arch: str | None = None,
    unsafe_load: bool = False,
    threads: int | None = None,
) -> AuditResult:
    """Audit one model: how well each of its units tells clean images from watermarked ones.

    ``layers`` are ``logits``, ``features``, ``blocks`` or module paths (``wmprobe layers``).
    ``cache``: True uses the default cache folder (``$WMPROBE_CACHE`` or ``~/.cache/wmprobe``),
    a path or an :class:`~wmprobe.cache.ActivationCache` that one, False none. ``arch`` and
    ``unsafe_load`` apply to ``ckpt:`` models. See :func:`~wmprobe.activations.extract` for the
    rest.

    Example:
        >>> result = audit("../shared/data/imagenet-samples", limit=20)  # doctest: +SKIP
        >>> result.counts()  # doctest: +SKIP
    """
    start = time.perf_counter()
    if not scenarios:
        raise ValueError("Expected argument `scenarios` to name at least one scenario but got none")
    probe_sets = [Scenario.preset(name) for name in scenarios]  # unknown names fail before work
    image_set = (
        images
        if isinstance(images, ImageSet)
        else scan_folder(images, keep_watermarked=keep_watermarked, limit=limit)
    )
    loaded = load_model(
        model,
        pretrained=pretrained,
        device=device,
        allow_download=allow_download,
        arch=arch,
        unsafe_load=unsafe_load,
    )
    store = _cache(cache)
    acts = extract(
        loaded,
        image_set.records,
        probe_sets,
        seed=seed,
        layers=layers,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
        cache=store,
        reduction=reduction,
        dtype=dtype,
        jpeg_quality=jpeg_quality,
        threads=threads,
    )
    if not acts.image_ids:
        from .errors import ImageFolderError

        raise ImageFolderError(
            f"None of the {len(image_set)} images could be read; first reasons: "
            + "; ".join(list(acts.skipped.values())[:3])
        )
    config = {
        "model": model,
        "pretrained": pretrained,
        "images": str(image_set.root),
        "scenarios": list(scenarios),
        "layers": list(layers),
        "seed": seed,
        "limit": limit,
        "keep_watermarked": keep_watermarked,
        "device": str(loaded.device),
        "reduction": reduction,
        "dtype": dtype,
        "jpeg_quality": jpeg_quality,
        "cache": str(store.root) if store is not None else None,
        "weights_hash": loaded.weights_hash() if store is not None else None,
    }
    table = unit_table(acts, loaded.class_names)
    return AuditResult(
        model=model,
        table=table,
        activations=acts,
        images=image_set,
        config=config,
        seconds=time.perf_counter() - start,
    )
