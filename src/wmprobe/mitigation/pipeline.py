"""``wmprobe mitigate`` as a function: cached features -> sweep -> tables, figures, export."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from wmprobe._version import __version__
from wmprobe.constants import PAPER_FRACTIONS
from wmprobe.errors import MitigationError
from wmprobe.mitigation import heads
from wmprobe.mitigation.downstream import resolve_downstream, scan_image_folder
from wmprobe.mitigation.export import export_mitigated
from wmprobe.mitigation.features import DownstreamFeatures, downstream_features, probe_set_features
from wmprobe.mitigation.heads import DEFAULT_C, DEFAULT_C_GRID
from wmprobe.mitigation.ranking import RANKINGS, check_fractions, unit_d
from wmprobe.mitigation.sweep import SweepConfig, SweepInputs, SweepResult, run_sweep
from wmprobe.models import LoadedModel, load_model
from wmprobe.probes.scenario import Scenario


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
        """Write the tables, figures, the exported model and run.json to ``out_dir``."""
        from wmprobe.mitigation.figures import (
            auc_distribution,
            auc_distribution_data,
            fraction_curves,
            save_figure,
        )

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        sweep = self.sweep
        table = self.table()
        paths: dict[str, Path] = {}
        for name, frame in (
            ("table.csv", table),
            ("runs.csv", sweep.runs),
            ("feature_units.csv", sweep.feature_d),
            ("cv.csv", sweep.cv),
        ):
            frame.to_csv(out / name, index=False)
            paths[name] = out / name
        sweep.units.to_parquet(out / "output_units.parquet", index=False)
        paths["output_units.parquet"] = out / "output_units.parquet"
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
        (out / "split.json").write_text(json.dumps(split))
        paths["split.json"] = out / "split.json"
        exported = export_mitigated(
            self.model,
            head,
            out / "mitigated",
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
        (out / "summary.txt").write_text(self.summary() + "\n")
        paths["summary.txt"] = out / "summary.txt"
        manifest = {
            **self.config,
            "timings": self.timings,
            "wmprobe_version": __version__,
            "python": platform.python_version(),
            "downstream_skipped": self.downstream.skipped,
        }
        (out / "run.json").write_text(json.dumps(manifest, indent=2, default=str))
        paths["run.json"] = out / "run.json"
        return paths


def _default_export(fractions: Sequence[float]) -> float:
    below = [f for f in fractions if f <= 0.1]
    return max(below) if below else min(fractions)


def mitigate(
    images: str | Path,
    downstream: str | Path,
    *,
    model: str = "efficientnet_lite0",
    scenarios: Sequence[str] = ("chinese",),
    fractions: Sequence[float] = PAPER_FRACTIONS,
    ranking: str = "d",
    null_scenario: str | None = None,
    null_quantile: float = 0.95,
    seeds: Sequence[int] = (0,),
    random_draws: int = 0,
    cv: bool = False,
    C: float = DEFAULT_C,
    C_grid: Sequence[float] = DEFAULT_C_GRID,
    test_fraction: float = 0.2,
    export_fraction: float | None = None,
    training: str = "lbfgs",
    epochs: int = 10,
    lr: float = 0.1,
    probe_seed: int = 0,
    limit: int | None = None,
    limit_per_class: int | None = None,
    keep_watermarked: bool = False,
    cache_dir: str | Path | None = None,
    download: bool = False,
    data_dir: str | Path | None = None,
    pretrained: bool = True,
    device: str = "auto",
    allow_download: bool = False,
    batch_size: int = 16,
    num_workers: int | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> MitigationRun:
    """Leave out the most watermark-sensitive backbone units when training a new linear head.

    Ranks the backbone's feature units by their d on the probe set (``images`` with each of
    ``scenarios`` drawn), trains a head on the downstream ImageFolder for each fraction of units
    left out, and measures each head: held-out accuracy, its output units' d on the probe set, and
    how often its prediction flips when the text is drawn on a test image. ``training="paper"``
    trains the heads the paper's way (SGD on augmented images); the default fits them on cached
    features by L-BFGS. ``threads`` sets torch's thread count for the run (restored after).

    Example:
        >>> run = mitigate("../shared/data/imagenet-samples",
        ...                "../shared/data/caltech-101")  # doctest: +SKIP
        >>> run.table()  # doctest: +SKIP
    """
    with heads.threads(threads):
        return _mitigate(**{k: v for k, v in locals().items() if k != "threads"})


def _mitigate(
    images, downstream, *, model, scenarios, fractions, ranking, null_scenario, null_quantile,
    seeds, random_draws, cv, C, C_grid, test_fraction, export_fraction, training, epochs, lr,
    probe_seed, limit, limit_per_class, keep_watermarked, cache_dir, download, data_dir,
    pretrained, device, allow_download, batch_size, num_workers, progress,
) -> MitigationRun:  # fmt: skip
    start = time.perf_counter()
    fractions = check_fractions(fractions)
    if ranking not in RANKINGS:
        raise MitigationError(f"Unknown ranking {ranking!r}; known: {', '.join(RANKINGS)}.")
    if training not in ("lbfgs", "paper"):
        raise MitigationError(f"Unknown training {training!r}; known: lbfgs, paper.")
    if training == "paper" and not (epochs >= 1 and lr > 0):
        raise MitigationError(
            f"Expected arguments `epochs` >= 1 and `lr` > 0 but got {epochs} and {lr}"
        )
    scenarios = list(dict.fromkeys(scenarios))
    if not scenarios:
        raise MitigationError("Expected argument `scenarios` to name at least one scenario")
    if ranking == "null" and not null_scenario:
        raise MitigationError(
            "Ranking `null` needs a null scenario (--null-scenario): a probe set without a "
            "watermark effect whose d per unit is the null. Or call rank_units with a null array."
        )
    if ranking != "null" and null_scenario:
        raise MitigationError("A null scenario is used only with ranking `null`.")
    if null_scenario in scenarios:
        raise MitigationError(f"The null scenario {null_scenario!r} is also a watermark scenario.")
    probe_names = scenarios + ([null_scenario] if null_scenario else [])
    for s in probe_names:
        Scenario.preset(s)  # unknown names fail before any work
    export_fraction = _default_export(fractions) if export_fraction is None else export_fraction
    if export_fraction not in fractions:
        raise MitigationError(
            f"The export fraction {export_fraction} is not one of the fractions {fractions}."
        )
    folder = resolve_downstream(downstream, data_dir=data_dir, download=download)
    image_folder = scan_image_folder(folder)  # not an ImageFolder: fails before any work
    loaded = load_model(model, pretrained=pretrained, device=device, allow_download=allow_download)
    timings: dict = {}
    acts, probe_manifest = probe_set_features(
        loaded,
        images,
        probe_names,
        seed=probe_seed,
        keep_watermarked=keep_watermarked,
        limit=limit,
        cache_dir=cache_dir,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
    )
    timings["probe_set_features"] = 0.0 if probe_manifest["cached"] else probe_manifest["seconds"]
    down = downstream_features(
        loaded,
        image_folder,
        scenarios=scenarios,
        seed=probe_seed,
        cache_dir=cache_dir,
        limit_per_class=limit_per_class,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
    )
    timings["downstream_features"] = 0.0 if down.manifest["cached"] else down.manifest["seconds"]
    clean = acts.get("features", "clean")
    inputs = SweepInputs(
        probe_clean=clean,
        probe={s: acts.get("features", s) for s in scenarios},
        down_clean=down.clean,
        down_probe=down.probes,
        labels=down.labels,
        n_classes=len(down.classes),
        null_d=unit_d(clean, acts.get("features", null_scenario)) if null_scenario else None,
    )
    config = SweepConfig(
        fractions=fractions,
        ranking=ranking,
        seeds=list(seeds),
        random_draws=random_draws,
        C=C,
        cv=cv,
        C_grid=list(C_grid),
        test_fraction=test_fraction,
        null_quantile=null_quantile,
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
            epochs=epochs,
            lr=lr,
            num_workers=num_workers,
            progress=progress,
        )
    t0 = time.perf_counter()
    sweep = run_sweep(inputs, config, fitter=fitter, progress=progress)
    timings["sweep"] = time.perf_counter() - t0
    timings.update({f"sweep_{k}": v for k, v in sweep.timings.items()})
    timings["total"] = time.perf_counter() - start
    run_config = {
        "model": model,
        "pretrained": pretrained,
        "images": str(images),
        "probe_images_used": len(acts.image_ids),
        "probe_images_skipped": acts.skipped,
        "downstream": str(folder),
        "downstream_name": str(downstream) if str(downstream) == "caltech256" else folder.name,
        "scenarios": scenarios,
        "null_scenario": null_scenario,
        "null_quantile": null_quantile,
        "ranking": ranking,
        "fractions": fractions,
        "seeds": list(seeds),
        "random_draws": random_draws,
        "cv": cv,
        "C": C,
        "C_grid": list(C_grid),
        "test_fraction": test_fraction,
        "training": training,
        "epochs": epochs if training == "paper" else None,
        "lr": lr if training == "paper" else None,
        "probe_seed": probe_seed,
        "limit": limit,
        "limit_per_class": limit_per_class,
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
