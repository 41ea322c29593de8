"""The sweep: for each fraction, a head without the most sensitive units, and a random baseline.

Arrays in, tables out: :func:`run_sweep` needs only the cached features (probe set and downstream),
so it runs in seconds to minutes and is tested without any model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from wmprobe.constants import THRESHOLDS
from wmprobe.errors import MitigationError
from wmprobe.mitigation.downstream import split_indices
from wmprobe.mitigation.heads import DEFAULT_C, DEFAULT_C_GRID, LinearHead, choose_C, fit_head
from wmprobe.mitigation.ranking import (
    check_fractions,
    kept_units,
    n_left_out,
    random_order,
    rank_units,
    unit_d,
)
from wmprobe.stats.core import auc, count_above, differentiability

#: ``fit(train_rows, kept_per_fraction, C, seed) -> heads``: fits the heads of one ranking.
HeadFitter = Callable[[np.ndarray, Sequence[np.ndarray], float, int], list[LinearHead]]

SENSITIVE, RANDOM = "sensitive", "random"


@dataclass
class SweepInputs:
    """The cached features a sweep needs.

    Attributes:
        probe_clean: probe-set features on the clean images ``[n_probe, n_features]``.
        probe: scenario -> probe-set features with the text drawn ``[n_probe, n_features]``.
        down_clean: downstream features ``[n_down, n_features]``; labels: ``[n_down]``.
        down_probe: scenario -> downstream features with the text drawn (the flip rate).
        n_classes: downstream classes.
        null_d: units' d under the null, for ranking ``null`` (see ``rank_units``).
    """

    probe_clean: np.ndarray
    probe: dict[str, np.ndarray]
    down_clean: np.ndarray
    down_probe: dict[str, np.ndarray]
    labels: np.ndarray
    n_classes: int
    null_d: np.ndarray | None = None

    def check(self) -> None:
        n_f = self.probe_clean.shape[1]
        if not self.probe:
            raise MitigationError(
                "Expected at least one scenario's probe-set features but got none"
            )
        for name, arrays in (("probe", self.probe), ("down_probe", self.down_probe)):
            for s, a in arrays.items():
                ref = self.probe_clean if name == "probe" else self.down_clean
                if a.shape != ref.shape:
                    raise MitigationError(
                        f"Expected {name}[{s!r}] to have shape {ref.shape} but got {a.shape}"
                    )
        if self.down_clean.shape[1] != n_f:
            raise MitigationError(
                f"Probe-set features have {n_f} units but downstream features have "
                f"{self.down_clean.shape[1]}; they must come from the same model layer."
            )
        if len(self.labels) != len(self.down_clean):
            raise MitigationError(
                f"Expected one label per downstream row ({len(self.down_clean)}) "
                f"but got {len(self.labels)}"
            )


@dataclass
class SweepConfig:
    """How the sweep runs; the defaults are the paper protocol (one seed, fixed C, no baseline)."""

    fractions: Sequence[float] = (0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.25, 0.5)
    ranking: str = "d"
    seeds: Sequence[int] = (0,)
    random_draws: int = 0
    C: float = DEFAULT_C
    cv: bool = False
    C_grid: Sequence[float] = DEFAULT_C_GRID
    n_folds: int = 3
    test_fraction: float = 0.2
    null_quantile: float = 0.95
    max_iter: int = 1000
    tol: float = 1e-5


@dataclass
class SweepResult:
    """What a sweep measured.

    Attributes:
        runs: one row per (seed, ranking, draw, fraction): accuracy, accuracy_change (from the
            smallest fraction, same seed and draw), accuracy_probe (text drawn on the test
            images), flip_rate, max_d, mean_d, counts of output units above each d threshold.
        units: one row per (seed, ranking, draw, fraction, scenario, output unit): auc, d.
        feature_d: one row per backbone unit: d on each scenario, its rank (0 = left out first).
        heads: fraction -> the fitted head of the sensitive ranking on the first seed.
        splits: seed -> (train rows, test rows) of the downstream features.
        cv: the cross-validation rows (seed, C, fold, accuracy), empty without CV.
        timings: seconds spent ranking, fitting heads and evaluating.
    """

    config: SweepConfig
    runs: pd.DataFrame
    units: pd.DataFrame
    feature_d: pd.DataFrame
    heads: dict[float, LinearHead]
    splits: dict[int, tuple[np.ndarray, np.ndarray]]
    cv: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """One row per fraction: the sensitive ranking's means (and sd over seeds), next to the
        random baseline's (mean and sd over seeds and draws). ``accuracy_change`` is the paired
        change from the smallest fraction on the same split."""
        metrics = ["accuracy", "accuracy_change", "accuracy_probe", "flip_rate", "max_d"]
        metrics += ["mean_d"] + [f"d>{t}" for t in THRESHOLDS]
        out = []
        for fraction, group in self.runs.groupby("fraction", sort=True):
            row: dict = {"fraction": fraction, "left_out": int(group["left_out"].iloc[0])}
            for ranking, prefix in ((SENSITIVE, ""), (RANDOM, "random_")):
                g = group[group["ranking"] == ranking]
                if g.empty:
                    continue
                for m in metrics:
                    row[prefix + m] = float(g[m].mean())
                for m in ("accuracy", "accuracy_change", "max_d"):
                    row[prefix + m + "_sd"] = float(g[m].std(ddof=1)) if len(g) > 1 else np.nan
                row[prefix + "n"] = len(g)
            out.append(row)
        return pd.DataFrame(out)


def lbfgs_fitter(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    max_iter: int = 1000,
    tol: float = 1e-5,
) -> HeadFitter:
    """The default fitter: L-BFGS heads on cached features, each warm-started from the previous."""

    def fit(
        train: np.ndarray, kepts: Sequence[np.ndarray], C: float, seed: int
    ) -> list[LinearHead]:
        heads, previous = [], None
        for kept in kepts:
            previous = fit_head(
                features[train],
                labels[train],
                n_classes=n_classes,
                kept=kept,
                C=C,
                init=previous,
                max_iter=max_iter,
                tol=tol,
            )
            heads.append(previous)
        return heads

    return fit


def evaluate_head(head: LinearHead, inputs: SweepInputs, test: np.ndarray) -> tuple[dict, dict]:
    """Accuracy, flip rate and output-unit d of one head.

    Returns the metrics and, per scenario, the AUC of every output unit on the probe set
    (clean = 0, probe = 1). With several scenarios, a unit's d is its largest over them, the
    probe accuracy the lowest and the flip rate the highest.
    """
    y = inputs.labels[test]
    pred = head.logits(inputs.down_clean[test]).argmax(axis=1)
    metrics = {"accuracy": float((pred == y).mean())}
    acc_probe, flips = [], []
    for s in inputs.probe:
        if s in inputs.down_probe:
            pred_p = head.logits(inputs.down_probe[s][test]).argmax(axis=1)
            acc_probe.append(float((pred_p == y).mean()))
            flips.append(float((pred_p != pred).mean()))
    metrics["accuracy_probe"] = min(acc_probe) if acc_probe else np.nan
    metrics["flip_rate"] = max(flips) if flips else np.nan
    clean_logits = head.logits(inputs.probe_clean)
    aucs = {s: auc(clean_logits, head.logits(p)) for s, p in inputs.probe.items()}
    d = np.max(np.stack([differentiability(a) for a in aucs.values()]), axis=0)
    metrics["max_d"] = float(d.max())
    metrics["mean_d"] = float(d.mean())
    metrics.update({f"d>{t}": n for t, n in count_above(d, THRESHOLDS).items()})
    return metrics, aucs


def run_sweep(
    inputs: SweepInputs,
    config: SweepConfig | None = None,
    *,
    fitter: HeadFitter | None = None,
    progress: bool = True,
) -> SweepResult:
    """Rank the units, fit a head per fraction (sensitive units left out, and random baselines),
    and measure each head.

    For every seed: a stratified train/test split of the downstream rows; with ``cv``, C chosen by
    cross-validation on the training rows with every unit kept (then used for every fraction);
    the test rows are used only for the measurements.
    """
    config = config or SweepConfig()
    inputs.check()
    fractions = check_fractions(config.fractions)
    if not config.seeds:
        raise MitigationError("Expected argument `seeds` to hold at least one seed but got none")
    if config.random_draws < 0:
        raise MitigationError(
            f"Expected argument `random_draws` to be >= 0 but got {config.random_draws}"
        )
    fitter = fitter or lbfgs_fitter(
        inputs.down_clean,
        inputs.labels,
        inputs.n_classes,
        max_iter=config.max_iter,
        tol=config.tol,
    )
    timings = {"ranking": 0.0, "heads": 0.0, "cv": 0.0, "evaluation": 0.0}

    start = time.perf_counter()
    d_units = {s: unit_d(inputs.probe_clean, p) for s, p in inputs.probe.items()}
    order = rank_units(
        d_units, method=config.ranking, null_d=inputs.null_d, null_quantile=config.null_quantile
    )
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    feature_d = pd.DataFrame({"unit": np.arange(len(order)), "rank": rank})
    for s, d in d_units.items():
        feature_d[f"d_{s}"] = d
    timings["ranking"] = time.perf_counter() - start

    n_units = inputs.probe_clean.shape[1]
    # The random orders are drawn per (seed, draw).
    orders = [(SENSITIVE, 0, order)] + [(RANDOM, d, None) for d in range(config.random_draws)]
    runs, unit_rows, heads, splits, cv_rows = [], [], {}, {}, []
    total = len(config.seeds) * len(orders)
    bar = tqdm(total=total, desc="heads", unit="ranking", disable=not progress)
    with bar:
        for seed in config.seeds:
            train, test = split_indices(
                inputs.labels, test_fraction=config.test_fraction, seed=seed
            )
            splits[seed] = (train, test)
            C = config.C
            if config.cv:
                t0 = time.perf_counter()
                C, rows = choose_C(
                    inputs.down_clean[train],
                    inputs.labels[train],
                    n_classes=inputs.n_classes,
                    grid=config.C_grid,
                    n_folds=config.n_folds,
                    seed=seed,
                    max_iter=config.max_iter,
                    tol=config.tol,
                )
                cv_rows += [{"seed": seed, **r, "chosen": r["C"] == C} for r in rows]
                timings["cv"] += time.perf_counter() - t0
            for ranking, draw, fixed in orders:
                o = fixed if fixed is not None else random_order(n_units, seed=seed, draw=draw)
                kepts = [kept_units(o, f) for f in fractions]
                t0 = time.perf_counter()
                fitted = fitter(train, kepts, C, seed)
                timings["heads"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                for fraction, head in zip(fractions, fitted, strict=True):
                    metrics, aucs = evaluate_head(head, inputs, test)
                    key = {"seed": seed, "ranking": ranking, "draw": draw, "fraction": fraction}
                    runs.append(
                        {
                            **key,
                            "left_out": n_left_out(fraction, n_units),
                            "C": C,
                            **metrics,
                            "n_iter": head.n_iter,
                        }
                    )
                    for s, a in aucs.items():
                        unit_rows.append(
                            pd.DataFrame(
                                {
                                    **key,
                                    "scenario": s,
                                    "unit": np.arange(len(a)),
                                    "auc": a,
                                    "d": differentiability(a),
                                }
                            )
                        )
                    if seed == config.seeds[0] and ranking == SENSITIVE:
                        heads[fraction] = head
                timings["evaluation"] += time.perf_counter() - t0
                bar.update(1)
    runs = pd.DataFrame(runs)
    keys = ["seed", "ranking", "draw"]
    base = runs[runs["fraction"] == fractions[0]].set_index(keys)["accuracy"]
    runs.insert(
        runs.columns.get_loc("accuracy") + 1,
        "accuracy_change",
        runs["accuracy"].to_numpy() - base.loc[pd.MultiIndex.from_frame(runs[keys])].to_numpy(),
    )
    return SweepResult(
        config=config,
        runs=runs,
        units=pd.concat(unit_rows, ignore_index=True),
        feature_d=feature_d,
        heads=heads,
        splits=splits,
        cv=pd.DataFrame(cv_rows),
        timings=timings,
    )
