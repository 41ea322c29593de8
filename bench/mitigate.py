"""Bench: the mitigation sweep's time against one feature-extraction pass over the downstream set.

The paper protocol (its 10 fractions, fixed C, one seed, no random baseline): ranking + heads +
evaluation on cached features, divided by the time of one clean feature-extraction pass over every
downstream image. That pass is timed in the same run on a random subset of the downstream images
(before and after the sweep, averaged) and scaled linearly to the whole set; the output says so.
With --study, the fuller study (C by cross-validation, several seeds, random baselines) is timed
and reported on its own line.

    PYTHONPATH=src python bench/mitigate.py --cache .wmprobe-cache [--study]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from wmprobe.constants import PAPER_FRACTIONS
from wmprobe.extraction.activations import extract
from wmprobe.mitigation import SweepConfig, SweepInputs, run_sweep
from wmprobe.mitigation.downstream import scan_image_folder
from wmprobe.mitigation.features import downstream_features, probe_set_features
from wmprobe.models import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def time_extraction(model, records, subset: int, seed: int) -> tuple[float, int]:
    """Seconds of a clean feature pass over a random subset of ``records``, and its size."""
    rng = np.random.default_rng(seed)
    pick = [records[i] for i in sorted(rng.choice(len(records), subset, replace=False))]
    start = time.perf_counter()
    extract(model, pick, [], layers=("features",), progress=False)
    return time.perf_counter() - start, len(pick)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--images", default=str(DATA / "imagenet-samples"))
    ap.add_argument("--downstream", default=str(DATA / "caltech-101"))
    ap.add_argument("--scenario", default="chinese")
    ap.add_argument("--cache", default=None, help="feature cache (default: ~/.cache/wmprobe)")
    ap.add_argument("--subset", type=int, default=400, help="images timed for the extraction pass")
    ap.add_argument("--study", action="store_true", help="also time the fuller study")
    ap.add_argument("--seeds", type=int, default=5, help="seeds of the fuller study")
    ap.add_argument("--draws", type=int, default=3, help="random draws of the fuller study")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the whole run")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()} (extraction and sweep alike)")

    model = load_model(args.model, device="cpu")
    t0 = time.perf_counter()
    acts, probe_manifest = probe_set_features(
        model, args.images, [args.scenario], cache_dir=args.cache, progress=False
    )
    down = downstream_features(
        model, args.downstream, scenarios=[args.scenario], cache_dir=args.cache, progress=False
    )
    cached = probe_manifest["cached"] and down.manifest["cached"]
    print(
        f"features {'read from the cache' if cached else 'computed (not counted)'} in "
        f"{time.perf_counter() - t0:.1f} s: probe set {acts.values['features'].shape[0]} images, "
        f"downstream {down.clean.shape[0]} images x {down.clean.shape[1]} units, "
        f"{len(down.classes)} classes"
    )
    inputs = SweepInputs(
        probe_clean=acts.get("features", "clean"),
        probe={args.scenario: acts.get("features", args.scenario)},
        down_clean=down.clean,
        down_probe=down.probes,
        labels=down.labels,
        n_classes=len(down.classes),
    )
    records = scan_image_folder(args.downstream).records
    n_total = len(records)

    before, n = time_extraction(model, records, args.subset, seed=1)
    start = time.perf_counter()
    result = run_sweep(inputs, SweepConfig(fractions=PAPER_FRACTIONS), progress=False)
    sweep_s = time.perf_counter() - start
    after, _ = time_extraction(model, records, args.subset, seed=2)
    per_image = (before + after) / (2 * n)
    pass_s = per_image * n_total
    print(
        f"extraction pass: {before:.1f} s and {after:.1f} s on two random subsets of {n} of "
        f"{n_total} images (clean, feature layer), scaled linearly: {pass_s:.1f} s"
    )
    t = result.timings
    print(
        f"sweep (paper protocol: {len(PAPER_FRACTIONS)} fractions, C={result.config.C}, 1 seed): "
        f"{sweep_s:.1f} s (ranking {t['ranking']:.1f}, heads {t['heads']:.1f}, "
        f"evaluation {t['evaluation']:.1f})"
    )
    print(f"ratio sweep / extraction pass: {sweep_s / pass_s:.2f} (target <= 1.5)")

    if args.study:
        config = SweepConfig(
            fractions=PAPER_FRACTIONS,
            seeds=list(range(args.seeds)),
            random_draws=args.draws,
            cv=True,
        )
        start = time.perf_counter()
        study = run_sweep(inputs, config, progress=False)
        study_s = time.perf_counter() - start
        t = study.timings
        n_heads = len(study.runs)
        print(
            f"fuller study ({args.seeds} seeds, CV over C {list(config.C_grid)} with "
            f"{config.n_folds} folds, {args.draws} random draws; {n_heads} heads): {study_s:.1f} s "
            f"(cv {t['cv']:.1f}, heads {t['heads']:.1f}, evaluation {t['evaluation']:.1f}); "
            f"ratio to the extraction pass: {study_s / pass_s:.2f}"
        )


if __name__ == "__main__":
    main()
