"""Benchmark: the vectorised AUC engine against a per-unit loop of sklearn's roc_auc_score.

Run as ``PYTHONPATH=src python bench/auc.py``. Data: 4 scenarios x 2208 units x (998 clean + 998
probe) float32 activations, ReLU-like (about half exact zeros, so plenty of ties); the clean matrix
is shared by the scenarios, as in an audit. The sklearn loop is timed on a subset of the units of
every scenario and scaled linearly to all units (printed as such).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from wmprobe.stats.core import auc

N_IMAGES, N_UNITS, N_SCENARIOS = 998, 2208, 4


def make_data(seed: int, relu: bool = True) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    act = (lambda x: np.maximum(x, 0.0)) if relu else (lambda x: x)
    clean = act(rng.normal(size=(N_IMAGES, N_UNITS))).astype(np.float32)
    probes = []
    for s in range(N_SCENARIOS):
        shift = rng.normal(0.0, 0.1 * (s + 1), size=N_UNITS)  # each scenario moves some units
        probes.append(act(rng.normal(size=(N_IMAGES, N_UNITS)) + shift).astype(np.float32))
    return clean, probes


def time_engine(clean: np.ndarray, probe: np.ndarray, repeats: int):
    """Best wall time of ``repeats`` runs, the CPU time (all threads) of that run, the AUCs."""
    best, cpu, out = float("inf"), 0.0, np.empty(0)
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = auc(clean, probe)
        wall = time.perf_counter() - t0
        if wall < best:
            best, cpu = wall, time.process_time() - c0
    return best, cpu, out


def time_sklearn(clean: np.ndarray, probe: np.ndarray, units: np.ndarray):
    y = np.r_[np.zeros(len(clean)), np.ones(len(probe))]
    t0, c0 = time.perf_counter(), time.process_time()
    ref = [roc_auc_score(y, np.concatenate([clean[:, j], probe[:, j]])) for j in units]
    return time.perf_counter() - t0, time.process_time() - c0, np.array(ref)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sklearn-units", type=int, default=200, help="units per scenario for sklearn")
    ap.add_argument("--repeats", type=int, default=3, help="engine runs; the best one counts")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    clean, probes = make_data(args.seed)
    units = np.linspace(0, N_UNITS - 1, min(args.sklearn_units, N_UNITS)).astype(int)
    cells = f"{N_SCENARIOS} scenarios x {N_UNITS} units x ({N_IMAGES} + {N_IMAGES}) images"
    print(f"data: {cells}, float32, {np.mean(clean == 0):.0%} zeros")

    auc(clean, probes[0])  # warm up (allocations, thread start)
    engine_s = engine_cpu = sk_s = sk_cpu = diff = 0.0
    for probe in probes:  # alternate engine and sklearn so that both see the same machine load
        e_s, e_cpu, out = time_engine(clean, probe, args.repeats)
        s_s, s_cpu, ref = time_sklearn(clean, probe, units)
        engine_s, engine_cpu, sk_s, sk_cpu = (
            engine_s + e_s,
            engine_cpu + e_cpu,
            sk_s + s_s,
            sk_cpu + s_cpu,
        )
        diff = max(diff, float(np.abs(out[units] - ref).max()))
    scale = N_UNITS / len(units)
    sk_all = sk_s * scale

    best = f"best of {args.repeats} per scenario"
    print(f"engine: {engine_s:.3f} s (all {N_SCENARIOS * N_UNITS} units, {best})")
    print(
        f"sklearn loop: {sk_all:.3f} s (measured {sk_s:.3f} s on {len(units)} units x "
        f"{N_SCENARIOS} scenarios, scaled linearly to {N_UNITS} units)"
    )
    print(f"ratio: {sk_all / engine_s:.0f}")
    print(f"max |diff|: {diff:.3g} (over the {len(units) * N_SCENARIOS} units compared)")
    print(
        f"cpu time (all threads; less sensitive to other load): engine {engine_cpu:.3f} s, "
        f"sklearn loop {sk_cpu * scale:.3f} s (scaled), ratio {sk_cpu * scale / engine_cpu:.0f}"
    )
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")

    mixed_clean, mixed_probes = make_data(args.seed + 1, relu=False)
    mixed_s = sum(time_engine(mixed_clean, p, args.repeats)[0] for p in mixed_probes)
    print(
        f"engine, signed data (logit-like, 64-bit keys): {mixed_s:.3f} s, "
        f"ratio about {sk_all / mixed_s:.0f}"
    )


if __name__ == "__main__":
    main()
