"""The audit: probe sets -> activations -> AUC and d per unit -> tables and a summary."""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from wmprobe._version import __version__
from wmprobe.auditing.tables import audit_table, class_table, output_summary, stability_table
from wmprobe.constants import DEFAULT_LAYERS, THRESHOLDS
from wmprobe.errors import ImageFolderError, InvalidArgumentError, RunFolderError
from wmprobe.extraction.activations import Activations, extract, require_readable
from wmprobe.extraction.cache import ActivationCache
from wmprobe.extraction.engines import Engine
from wmprobe.models import load_model
from wmprobe.probes.artifacts import PAPER_SCENARIOS
from wmprobe.probes.folder import FolderScenario
from wmprobe.probes.images import ImageSet, check_jpeg_quality, imagenet_wnids, scan_folder
from wmprobe.probes.scenario import Scenario, resolve_scenarios
from wmprobe.stats import count_above

__all__ = ["AuditResult", "audit"]


@dataclass
class AuditResult:
    """What an audit found for one model: the per-unit table and what it was computed on."""

    model: str
    table: pd.DataFrame
    activations: Activations
    images: ImageSet
    config: dict = field(default_factory=dict)
    seconds: float = 0.0
    outputs: pd.DataFrame | None = None
    classes: pd.DataFrame | None = None
    stability: pd.DataFrame | None = None

    def counts(self, thresholds: Sequence[float] = THRESHOLDS) -> pd.DataFrame:
        """Per scenario and layer: the number of units and how many have d above each threshold."""
        rows = []
        for (scenario, layer), group in self.table.groupby(["scenario", "layer"], sort=False):
            row = {"scenario": scenario, "layer": layer, "units": len(group)}
            above = count_above(group["d"].to_numpy(), tuple(thresholds))
            row.update({f"d>{t}": above[float(t)] for t in thresholds})
            row["q<0.05"] = int((group["q"] < 0.05).sum())
            row["null_thr"] = round(float(group["null_threshold"].iloc[0]), 4)
            row["d>null_thr"] = int(group["calibrated"].sum())
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
        from wmprobe.auditing.summary import format_summary

        return format_summary(self)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write the tables (units, counts, outputs, classes, stability), summary.txt and run.json.

        Also the per-image evidence the report needs (see :mod:`wmprobe.auditing.evidence`):
        ``predictions.parquet`` and ``top_images.parquet`` when logits were extracted, and
        ``accuracy.csv`` (variant, top1) when labels are known. What an earlier run left in the
        folder goes first (:func:`wmprobe.auditing.runfolder.clear`); run.json is written last,
        so a folder with run.json is complete. A write failure is a
        :class:`~wmprobe.errors.RunFolderError` (the activations stay in the cache).
        """
        from wmprobe.auditing import runfolder

        out = runfolder.check_writable(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"Cannot create the run folder {str(out)!r}: {exc}") from exc
        runfolder.clear(out)  # run.json first: the folder is not complete until the end
        paths: dict[str, Path] = {}
        for name, frame in self._outputs().items():
            if frame is None:
                continue
            if isinstance(frame, str):
                write = frame
            elif name.endswith(".parquet"):
                write = lambda p, f=frame: f.to_parquet(p, index=False)  # noqa: E731
            else:
                write = lambda p, f=frame: f.to_csv(p, index=False)  # noqa: E731
            paths[name] = runfolder.write_file(out, name, write)
        manifest = {
            **self.config,
            "wmprobe_version": __version__,
            "python": platform.python_version(),
            "images_used": len(self.activations.image_ids),
            "images_excluded": self.images.excluded,
            "images_skipped": self.activations.skipped,
            "seconds": round(self.seconds, 2),
        }
        paths["run.json"] = runfolder.write_run_json(out, manifest)
        return paths

    def _outputs(self) -> dict[str, pd.DataFrame | str | None]:
        """Each file of the run folder and what goes in it (None: not written for this run)."""
        from wmprobe.auditing.evidence import predictions_table, top_images_table

        return {
            "units.parquet": self.table,
            "units.csv": self.table,
            "counts.csv": self.counts(),
            "outputs.csv": self.outputs,
            "classes.parquet": self.classes,
            "stability.csv": self.stability,
            "summary.txt": self.summary() + "\n",
            "accuracy.csv": self.accuracy(),
            "predictions.parquet": predictions_table(self.activations),
            "top_images.parquet": top_images_table(
                self.activations, self.table, self.images.records
            ),
        }


def _pair_probe_folders(
    image_set: ImageSet, probe_sets: Sequence[Scenario]
) -> tuple[ImageSet, dict[str, int]]:
    """Leave out the clean images that a probe folder lacks; count probes with no clean image."""
    folders = [s for s in probe_sets if isinstance(s, FolderScenario)]
    if not folders:
        return image_set, {}
    ids = [r.image_id for r in image_set.records]
    excluded = dict(image_set.excluded)
    unpaired: dict[str, int] = {}
    for scenario in folders:
        for image_id in scenario.missing(ids):
            excluded.setdefault(image_id, f"no probe in {scenario.name}")
        unpaired[scenario.name] = len(scenario.unpaired(ids))
    records = [r for r in image_set.records if r.image_id not in excluded]
    if not records:
        raise ImageFolderError(
            f"No clean image has a partner in {', '.join(s.name for s in folders)}: a probe "
            "file pairs with the clean image of the same relative path and name (any suffix)."
        )
    return dataclasses.replace(image_set, records=records, excluded=excluded), unpaired


def _labels_for(image_set: ImageSet, n_outputs: int) -> tuple[ImageSet, str | None]:
    """``image_set`` with its ImageNet labels dropped when the model does not have ImageNet's
    1000 outputs (the labels would index other classes), and the note that says so."""
    n_imagenet = len(imagenet_wnids())
    if n_outputs == n_imagenet or all(r.label < 0 for r in image_set.records):
        return image_set, None
    records = [dataclasses.replace(r, label=-1) for r in image_set.records]
    note = (
        f"ImageNet labels not used: the model has {n_outputs} outputs, not ImageNet's "
        f"{n_imagenet} classes (no accuracy; unit AUCs need no labels)"
    )
    return dataclasses.replace(image_set, records=records), note


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
    scenarios: Sequence[str | Scenario] = PAPER_SCENARIOS,
    layers: Sequence[str] = DEFAULT_LAYERS,
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
    engine: Engine | None = None,
) -> AuditResult:
    """Audit one model: how well each of its units tells clean images from watermarked ones.

    ``layers`` are ``logits``, ``features``, ``blocks`` or module paths (``wmprobe layers``).
    ``cache``: True uses the default cache folder (``$WMPROBE_CACHE`` or ``~/.cache/wmprobe``),
    a path or an :class:`~wmprobe.extraction.cache.ActivationCache` that one, False none.
    ``arch`` and ``unsafe_load`` apply to ``ckpt:`` models. ``engine``: where the activations are
    computed (:func:`wmprobe.extraction.engines.get_engine`; None: here). See
    :func:`~wmprobe.extraction.activations.extract` for the rest. ``scenarios`` are names that
    :func:`wmprobe.probes.scenario.resolve_scenarios` understands
    (presets with modifiers, ``FILE.toml``, ``folder:PATH``) or :class:`Scenario` objects. With
    ``jpeg_quality`` both sides are JPEG-encoded at that quality (probes after drawing). Clean
    images without a partner in a probe folder are left out and listed in ``images.excluded``.

    Example:
        >>> result = audit("../shared/data/imagenet-samples", limit=20)  # doctest: +SKIP
        >>> result.counts()  # doctest: +SKIP
    """
    start = time.perf_counter()
    if not scenarios:
        raise InvalidArgumentError(
            "Expected argument `scenarios` to name at least one scenario but got none"
        )
    if jpeg_quality is not None:
        check_jpeg_quality(jpeg_quality)
    probe_sets = resolve_scenarios(
        scenarios
    )  # unknown names, bad files, missing packages: fail now
    image_set = (
        images
        if isinstance(images, ImageSet)
        else scan_folder(images, keep_watermarked=keep_watermarked, limit=limit)
    )
    image_set, unpaired = _pair_probe_folders(image_set, probe_sets)
    loaded = load_model(
        model,
        pretrained=pretrained,
        device=device,
        allow_download=allow_download,
        arch=arch,
        unsafe_load=unsafe_load,
    )
    image_set, labels_dropped = _labels_for(image_set, len(loaded.class_names))
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
        engine=engine,
    )
    require_readable(acts, len(image_set))
    config = {
        "model": model,
        "pretrained": pretrained,
        "images": str(image_set.root),
        "scenarios": [s.name for s in probe_sets],
        "scenario_specs": {s.name: s.spec_hash() for s in probe_sets},
        "scenario_definitions": [s.to_dict() for s in probe_sets],
        "probes_without_clean_image": unpaired,
        "jpeg_quality": jpeg_quality,
        "layers": list(layers),
        "seed": seed,
        "limit": limit,
        "keep_watermarked": keep_watermarked,
        "device": str(loaded.device),
        "engine": "local" if engine is None else engine.name,
        "reduction": reduction,
        "dtype": dtype,
        "cache": str(store.root) if store is not None else None,
        "weights_hash": loaded.weights_hash() if store is not None else None,
    }
    if labels_dropped:
        config["labels_dropped"] = labels_dropped
    table = audit_table(acts, loaded.class_names, seed=seed)
    has_logits = "logits" in acts.values
    return AuditResult(
        model=model,
        table=table,
        activations=acts,
        images=image_set,
        config=config,
        seconds=time.perf_counter() - start,
        outputs=output_summary(acts, loaded.class_names) if has_logits else None,
        classes=class_table(acts, loaded.class_names) if has_logits else None,
        stability=stability_table(acts, seed=seed),
    )
