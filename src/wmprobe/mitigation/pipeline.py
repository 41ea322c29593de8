"""``wmprobe mitigate`` as a function: cached features -> sweep -> tables, figures, export."""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from wmprobe._version import __version__
from wmprobe.auditing import runfolder
from wmprobe.constants import PAPER_FRACTIONS
from wmprobe.errors import InvalidArgumentError, MitigationError
from wmprobe.mitigation import heads
from wmprobe.mitigation.downstream import (
    check_measurable,
    resolve_downstream,
    scan_image_folder,
)
from wmprobe.mitigation.export import export_mitigated
from wmprobe.mitigation.features import (
    DownstreamFeatures,
    downstream_features,
    per_class,
    probe_set_features,
)
from wmprobe.mitigation.heads import DEFAULT_C, DEFAULT_C_GRID
from wmprobe.mitigation.ranking import RANKINGS, check_fractions, unit_d
from wmprobe.mitigation.sweep import SweepConfig, SweepInputs, SweepResult, run_sweep
from wmprobe.models import LoadedModel, load_model
from wmprobe.probes.scenario import Scenario, resolve_scenarios


@dataclass
class MitigationRun:
    """A finished mitigation: the sweep, what it ran on, and the head chosen for export."""

    model: LoadedModel
    sweep: SweepResult
    downstream: DownstreamFeatures
    export_fraction: float
    config: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """One row per fraction (see ``SweepResult.table``)."""
        return self.sweep.table()

    def summary(self) -> str:
        """The text that ``wmprobe mitigate`` prints."""
        c = self.config
        train, test = self.sweep.splits[self.sweep.config.seeds[0]]
        cols = ["fraction", "left_out", "accuracy", "accuracy_change", "max_d", "mean_d", "d>0.7"]
        cols += ["d>0.8", "d>0.9", "d>0.95", "flip_rate", "random_accuracy_change"]
        cols += ["random_max_d", "random_flip_rate", "accuracy_change_sd", "max_d_sd"]
        table = self.table()
        shown = table[[x for x in cols if x in table]].dropna(axis=1, how="all")
        counts = [x for x in shown.columns if x.startswith("d>") or x == "left_out"]
        shown = shown.astype({x: object for x in counts})
        for x in counts:  # whole numbers with one seed, means over seeds otherwise
            shown[x] = [f"{v:g}" for v in table[x]]
        cv = self.sweep.cv
        chosen = sorted(set(cv.loc[cv["chosen"], "C"])) if len(cv) else [self.sweep.config.C]
        lines = [
            f"wmprobe mitigate: {c['model']} on {c['downstream']} "
            f"({len(self.downstream.classes)} classes, {len(self.downstream.image_ids)} images; "
            f"train {len(train)} / test {len(test)} per seed)",
            f"units ranked by {c['ranking']} on {', '.join(c['scenarios'])} over "
            f"{c['probe_images_used']} probe images; seeds {list(self.sweep.config.seeds)}; "
            f"random baseline draws {self.sweep.config.random_draws}; "
            f"C {'by CV: ' if len(cv) else ''}{', '.join(f'{x:g}' for x in chosen)}; "
            f"heads trained {c['training']}",
        ]
        if c.get("probe_images_skipped"):
            n = len(c["probe_images_skipped"])
            lines.append(f"skipped {n} unreadable probe image(s) (listed in run.json)")
        if self.downstream.skipped:
            n = len(self.downstream.skipped)
            lines.append(f"skipped {n} unreadable downstream image(s) (listed in run.json)")
        lines += ["", shown.to_string(index=False, float_format=lambda v: f"{v:.4f}")]
        t = self.timings
        lines += [
            "",
            "seconds: "
            + ", ".join(f"{k} {v:.1f}" for k, v in t.items() if isinstance(v, int | float)),
            f"exported: the head with {100 * self.export_fraction:g}% of the units left out "
            f"(seed {self.sweep.config.seeds[0]})",
        ]
        return "\n".join(lines)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write the tables, figures, the exported model and run.json (last) to ``out_dir``.

        The files of an earlier mitigation in ``out_dir`` go first (its known names only); a
        write failure is a :class:`~wmprobe.errors.RunFolderError`.
        """

        out = runfolder.check_writable(out_dir)
        try:
            return self._save(out)
        except OSError as exc:  # figures and the exported model are written by their libraries
            raise runfolder.write_error(out, exc) from exc

    def _save(self, out: Path) -> dict[str, Path]:
        from wmprobe.mitigation.figures import (
            auc_distribution,
            auc_distribution_data,
            fraction_curves,
            save_figure,
        )

        out.mkdir(parents=True, exist_ok=True)
        runfolder.clear(out, kind="mitigation")  # run.json first; an earlier run's files go
        sweep = self.sweep
        table = self.table()
        paths: dict[str, Path] = {}
        for name, frame in (
            ("table.csv", table),
            ("runs.csv", sweep.runs),
            ("feature_units.csv", sweep.feature_d),
            ("cv.csv", sweep.cv),
        ):
            paths[name] = runfolder.write_file(out, name, frame.to_csv(index=False))
        paths["output_units.parquet"] = runfolder.write_file(
            out, "output_units.parquet", lambda p: sweep.units.to_parquet(p, index=False)
        )
        title = f"{self.config['model']}: {self.config['downstream_name']}"
        curves = table[[c for c in table.columns if c.endswith(("accuracy", "max_d", "_sd"))]]
        curves = pd.concat([table[["fraction", "left_out"]], curves], axis=1)
        for p in save_figure(fraction_curves(table, title=title), curves, out, "fraction_curves"):
            paths[p.name] = p
        dist = auc_distribution(sweep.units, title=title)
        for p in save_figure(dist, auc_distribution_data(sweep.units), out, "auc_distribution"):
            paths[p.name] = p
        seed = sweep.config.seeds[0]
        head = sweep.heads[self.export_fraction]
        row = sweep.runs[
            (sweep.runs["seed"] == seed)
            & (sweep.runs["ranking"] == "sensitive")
            & (sweep.runs["fraction"] == self.export_fraction)
        ].iloc[0]
        train, test = sweep.splits[seed]
        ids = self.downstream.image_ids
        split = {
            "seed": seed,
            "test_fraction": sweep.config.test_fraction,
            "root": str(self.downstream.root),
            "train": [ids[i] for i in train],
            "test": [ids[i] for i in test],
        }
        paths["split.json"] = runfolder.write_file(out, "split.json", json.dumps(split))
        exported = export_mitigated(
            self.model,
            head,
            out / runfolder.MITIGATED_DIR,
            classes=self.downstream.classes,
            extra={
                "fraction_left_out": self.export_fraction,
                "left_out": int(row["left_out"]),
                "ranking": self.config["ranking"],
                "scenarios": self.config["scenarios"],
                "seed": seed,
                "split": "../split.json",
                "test_accuracy": float(row["accuracy"]),
                "max_d": float(row["max_d"]),
            },
        )
        paths["mitigated"] = exported
        paths["summary.txt"] = runfolder.write_file(out, "summary.txt", self.summary() + "\n")
        manifest = {
            **self.config,
            "timings": self.timings,
            "wmprobe_version": __version__,
            "python": platform.python_version(),
            "downstream_skipped": self.downstream.skipped,
        }
        paths["run.json"] = runfolder.write_run_json(out, manifest, kind="mitigation")
        return paths


def _default_export(fractions: Sequence[float]) -> float:
    below = [f for f in fractions if f <= 0.1]
    return max(below) if below else min(fractions)


@dataclass(frozen=True)
class MitigationConfig:
    """Everything a mitigation run is asked to do (see :func:`mitigate` for the meaning).

    Example:
        >>> MitigationConfig(model="resnet18", fractions=(0, 0.1)).ranking
        'd'
    """

    model: str = "efficientnet_lite0"
    scenarios: Sequence[str | Scenario] = ("chinese",)
    fractions: Sequence[float] = PAPER_FRACTIONS
    ranking: str = "d"
    null_scenario: str | Scenario | None = None
    null_quantile: float = 0.95
    seeds: Sequence[int] = (0,)
    random_draws: int = 0
    cv: bool = False
    C: float = DEFAULT_C
    C_grid: Sequence[float] = DEFAULT_C_GRID
    test_fraction: float = 0.2
    export_fraction: float | None = None
    training: str = "lbfgs"
    epochs: int = 10
    lr: float = 0.1
    probe_seed: int = 0
    limit: int | None = None
    limit_per_class: int | None = None
    keep_watermarked: bool = False
    cache_dir: str | Path | None = None
    download: bool = False
    data_dir: str | Path | None = None
    pretrained: bool = True
    device: str = "auto"
    allow_download: bool = False
    batch_size: int = 16
    num_workers: int | None = None
    threads: int | None = None
    progress: bool = True
    command: str = ""

    def replace(self, **options: Any) -> MitigationConfig:
        """This config with ``options`` changed; an unknown option is a clear error."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidArgumentError(
                f"Expected options of MitigationConfig ({', '.join(sorted(known))}) but got "
                f"{', '.join(unknown)}"
            )
        return dataclasses.replace(self, **options)


def mitigate(
    images: str | Path,
    downstream: str | Path,
    config: MitigationConfig | None = None,
    **options: Any,
) -> MitigationRun:
    """Leave out the most watermark-sensitive backbone units when training a new linear head.

    Ranks the backbone's feature units by their d on the probe set (``images`` with each of
    ``scenarios`` drawn), trains a head on the downstream ImageFolder for each fraction of units
    left out, and measures each head: held-out accuracy, its output units' d on the probe set, and
    how often its prediction flips when the text is drawn on a test image. ``training="paper"``
    trains the heads the paper's way (SGD on augmented images); the default fits them on cached
    features by L-BFGS. ``threads`` sets torch's thread count for the run (restored after).
    ``scenarios`` take what ``wmprobe audit --scenarios`` takes (presets, spec files, probe
    folders) or :class:`~wmprobe.probes.scenario.Scenario` objects (e.g. from an audit's
    run.json). The request is a :class:`MitigationConfig`, or its fields as keyword ``options``
    (both: the options change the config).

    Example:
        >>> run = mitigate("../shared/data/imagenet-samples", "../shared/data/caltech-101",
        ...                model="efficientnet_lite0", fractions=[0, 0.1])  # doctest: +SKIP
        >>> run.table()  # doctest: +SKIP
    """
    config = (config or MitigationConfig()).replace(**options)
    with heads.threads(config.threads):
        return _mitigate(images, downstream, config)


def _mitigate(
    images: str | Path, downstream: str | Path, request: MitigationConfig
) -> MitigationRun:
    start = time.perf_counter()
    fractions = check_fractions(request.fractions)
    ranking, training, null_scenario = request.ranking, request.training, request.null_scenario
    if ranking not in RANKINGS:
        raise MitigationError(f"Unknown ranking {ranking!r}; known: {', '.join(RANKINGS)}.")
    if training not in ("lbfgs", "paper"):
        raise MitigationError(f"Unknown training {training!r}; known: lbfgs, paper.")
    if training == "paper" and not (request.epochs >= 1 and request.lr > 0):
        raise MitigationError(
            "Expected arguments `epochs` >= 1 and `lr` > 0 but got "
            f"{request.epochs} and {request.lr}"
        )
    # spec files, folders: resolved before any work; a scenario named twice counts once
    resolved = resolve_scenarios(list(request.scenarios))
    watermarks = list({s.name: s for s in resolved}.values())
    if not watermarks:
        raise MitigationError("Expected argument `scenarios` to name at least one scenario")
    scenarios = [s.name for s in watermarks]
    if ranking == "null" and not null_scenario:
        raise MitigationError(
            "Ranking `null` needs a null scenario (--null-scenario): a probe set without a "
            "watermark effect whose d per unit is the null. Or call rank_units with a null array."
        )
    if ranking != "null" and null_scenario:
        raise MitigationError("A null scenario is used only with ranking `null`.")
    null = resolve_scenarios([null_scenario])[0] if null_scenario else None
    if null is not None and null.name in scenarios:
        raise MitigationError(f"The null scenario {null.name!r} is also a watermark scenario.")
    probe_sets = watermarks + ([null] if null is not None else [])
    export_fraction = request.export_fraction
    export_fraction = _default_export(fractions) if export_fraction is None else export_fraction
    if export_fraction not in fractions:
        raise MitigationError(
            f"The export fraction {export_fraction} is not one of the fractions {fractions}."
        )
    folder = resolve_downstream(downstream, data_dir=request.data_dir, download=request.download)
    image_folder = scan_image_folder(folder)  # not an ImageFolder: fails before any work
    listed = np.array([r.label for r in per_class(image_folder.records, request.limit_per_class)])
    where = f"Downstream folder {str(folder)!r}"
    check_measurable(listed, image_folder.classes, test_fraction=request.test_fraction, where=where)
    loaded = load_model(
        request.model,
        pretrained=request.pretrained,
        device=request.device,
        allow_download=request.allow_download,
    )
    timings: dict = {}
    acts, probe_manifest = probe_set_features(
        loaded,
        images,
        probe_sets,
        seed=request.probe_seed,
        keep_watermarked=request.keep_watermarked,
        limit=request.limit,
        cache_dir=request.cache_dir,
        batch_size=request.batch_size,
        num_workers=request.num_workers,
        progress=request.progress,
    )
    timings["probe_set_features"] = 0.0 if probe_manifest["cached"] else probe_manifest["seconds"]
    down = downstream_features(
        loaded,
        image_folder,
        scenarios=watermarks,
        seed=request.probe_seed,
        cache_dir=request.cache_dir,
        limit_per_class=request.limit_per_class,
        batch_size=request.batch_size,
        num_workers=request.num_workers,
        progress=request.progress,
    )
    timings["downstream_features"] = 0.0 if down.manifest["cached"] else down.manifest["seconds"]
    readable = f"{where} (its readable images; {len(down.skipped)} skipped)"
    check_measurable(down.labels, down.classes, test_fraction=request.test_fraction, where=readable)
    clean = acts.get("features", "clean")
    inputs = SweepInputs(
        probe_clean=clean,
        probe={s: acts.get("features", s) for s in scenarios},
        down_clean=down.clean,
        down_probe=down.probes,
        labels=down.labels,
        n_classes=len(down.classes),
        null_d=unit_d(clean, acts.get("features", null.name)) if null is not None else None,
    )
    config = SweepConfig(
        fractions=fractions,
        ranking=ranking,
        seeds=list(request.seeds),
        random_draws=request.random_draws,
        C=request.C,
        cv=request.cv,
        C_grid=list(request.C_grid),
        test_fraction=request.test_fraction,
        null_quantile=request.null_quantile,
    )
    fitter = None
    if training == "paper":
        from wmprobe.mitigation.paper_training import paper_fitter

        by_id = {r.image_id: r for r in image_folder.records}
        fitter = paper_fitter(
            loaded,
            [by_id[i] for i in down.image_ids],
            down.labels,
            down.clean,
            len(down.classes),
            epochs=request.epochs,
            lr=request.lr,
            num_workers=request.num_workers,
            progress=request.progress,
        )
    t0 = time.perf_counter()
    sweep = run_sweep(inputs, config, fitter=fitter, progress=request.progress)
    timings["sweep"] = time.perf_counter() - t0
    timings.update({f"sweep_{k}": v for k, v in sweep.timings.items()})
    timings["total"] = time.perf_counter() - start
    run_config = {
        "command": request.command,
        "model": request.model,
        "pretrained": request.pretrained,
        "images": str(images),
        "probe_images_used": len(acts.image_ids),
        "probe_images_skipped": acts.skipped,
        "downstream": str(folder),
        "downstream_name": str(downstream) if str(downstream) == "caltech256" else folder.name,
        "downstream_excluded": image_folder.excluded,
        "scenarios": scenarios,
        "scenario_definitions": [s.to_dict() for s in probe_sets],
        "null_scenario": null.name if null is not None else None,
        "null_quantile": request.null_quantile,
        "ranking": ranking,
        "fractions": fractions,
        "seeds": list(request.seeds),
        "random_draws": request.random_draws,
        "cv": request.cv,
        "C": request.C,
        "C_grid": list(request.C_grid),
        "test_fraction": request.test_fraction,
        "training": training,
        "epochs": request.epochs if training == "paper" else None,
        "lr": request.lr if training == "paper" else None,
        "probe_seed": request.probe_seed,
        "limit": request.limit,
        "limit_per_class": request.limit_per_class,
        "export_fraction": export_fraction,
        "device": str(loaded.device),
        "torch_threads": torch.get_num_threads(),
        "probe_cache": probe_manifest["path"],
        "downstream_cache": down.manifest["path"],
    }
    return MitigationRun(
        model=loaded,
        sweep=sweep,
        downstream=down,
        export_fraction=export_fraction,
        config=run_config,
        timings=timings,
    )
