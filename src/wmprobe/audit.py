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
        """Write units.parquet, units.csv, counts.csv, summary.txt and run.json to ``out_dir``.

        Also the per-image evidence the report needs (see :mod:`wmprobe.evidence`):
        ``predictions.parquet`` and ``top_images.parquet`` when logits were extracted, and
        ``accuracy.csv`` (variant, top1) when labels are known. run.json is written last, so a
        folder with run.json is complete.
        """
        from .evidence import predictions_table, top_images_table

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "units.parquet": out / "units.parquet",
            "units.csv": out / "units.csv",
            "counts.csv": out / "counts.csv",
            "summary.txt": out / "summary.txt",
        }
        _atomic_write(paths["units.parquet"], lambda p: self.table.to_parquet(p, index=False))
        _atomic_write(paths["units.csv"], lambda p: self.table.to_csv(p, index=False))
        _atomic_write(paths["counts.csv"], lambda p: self.counts().to_csv(p, index=False))
        _atomic_write(paths["summary.txt"], lambda p: Path(p).write_text(self.summary() + "\n"))
        extra = {
            "accuracy.csv": (self.accuracy(), lambda df, p: df.to_csv(p, index=False)),
            "predictions.parquet": (
                predictions_table(self.activations),
                lambda df, p: df.to_parquet(p, index=False),
            ),
            "top_images.parquet": (
                top_images_table(self.activations, self.table, self.images.records),
                lambda df, p: df.to_parquet(p, index=False),
            ),
        }
        for name, (frame, write) in extra.items():
            if frame is not None:
                paths[name] = out / name
                _atomic_write(paths[name], lambda p, f=frame, w=write: w(f, p))
        paths["run.json"] = out / "run.json"
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


def unit_table(acts: Activations, class_names: Sequence[str]) -> pd.DataFrame:
    """The per-unit table: AUC and d of every unit of every layer for every scenario."""
    frames = []
    for layer, values in acts.values.items():
        clean = values[:, acts.variants.index(CLEAN), :]
        for scenario in acts.variants[1:]:
            a = auc(clean, acts.get(layer, scenario))
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
) -> AuditResult:
    """Audit one model: how well each of its units tells clean images from watermarked ones.

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
    loaded = load_model(model, pretrained=pretrained, device=device, allow_download=allow_download)
    acts = extract(
        loaded,
        image_set.records,
        probe_sets,
        seed=seed,
        layers=layers,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
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
