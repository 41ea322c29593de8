"""The tables of an audit: per unit (AUC, d, intervals, q, paired effects, null and placebo
columns), per output class (accuracy, delta_p, flips) and the stability of the top units."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .activations import CLEAN, Activations
from .output_metrics import CARTON_INDEX, output_metrics, top_flip_classes
from .stats import (
    auc,
    bh_qvalues,
    delong_pvalue,
    delong_variance,
    differentiability,
    null_threshold,
    split_half_stability,
    topk_jaccard,
    unit_table,
)

#: The quantile of the permutation-null d values that a unit must exceed to be ``calibrated``.
NULL_QUANTILE = 0.999
#: How far above the null threshold d must lie to count (floating-point rounding, no more).
CALIBRATION_MARGIN = 1e-9
#: How many sign-flip permutations make the null of one scenario and layer.
NULL_PERMUTATIONS = 20
#: The significance level for ``text_detector``.
ALPHA = 0.05

TABLE_COLUMNS = [
    "model", "layer", "scenario", "unit", "class_name", "auc", "d", "ci_low", "ci_high", "p", "q",
    "mean_diff", "std_diff", "wilcoxon_p", "null_threshold", "calibrated", "placebo_d",
    "placebo_q", "text_detector",
]  # fmt: skip

_PLACEBO = re.compile(r"\+placebo_[a-z]+")


def placebo_base(scenario: str) -> str | None:
    """The text scenario that a placebo controls for (``chinese+placebo_box`` -> ``chinese``)."""
    return _PLACEBO.sub("", scenario) if _PLACEBO.search(scenario) else None


def permutation_null_d(
    clean: np.ndarray, probe: np.ndarray, n_perm: int = NULL_PERMUTATIONS, seed: int = 0
) -> np.ndarray:
    """d of every unit under ``n_perm`` sign-flip permutations: ``[n_perm, n_units]``.

    Each permutation swaps the clean and probe rows of a random half of the images (row i of both
    is the same image), which is what d looks like when the artifact has no effect on these
    images and this model.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> c = rng.normal(size=(100, 3)); p = c + [0.0, 0.0, 5.0]
        >>> bool(permutation_null_d(c, p).max() < 0.75)
        True
    """
    c, p = np.asarray(clean), np.asarray(probe)
    if c.shape != p.shape:
        raise ValueError(
            f"Expected arguments `clean` and `probe` to be paired (same shape) but got {c.shape} "
            f"and {p.shape}"
        )
    rng = np.random.default_rng(seed)
    out = np.empty((n_perm, c.shape[1]))
    for i in range(n_perm):
        swap = (rng.random(c.shape[0]) < 0.5)[:, None]
        out[i] = differentiability(auc(np.where(swap, p, c), np.where(swap, c, p)))
    return out


def audit_table(
    acts: Activations, class_names: Sequence[str], seed: int = 0, n_perm: int = NULL_PERMUTATIONS
) -> pd.DataFrame:
    """One row per (layer, scenario, unit), with the columns of ``TABLE_COLUMNS``.

    ``q`` is Benjamini-Hochberg over the units of one layer and scenario. ``null_threshold`` is
    the ``NULL_QUANTILE`` quantile of d over every unit of that layer under ``n_perm`` sign-flip
    permutations of clean and probe (see :func:`permutation_null_d`), and ``calibrated`` says
    whether d exceeds it. (The ``null`` scenario cannot serve as the null: its two sides are
    pixel-identical, so its d is exactly 0.5; it checks the pipeline instead.)
    ``placebo_d`` is the AUC of placebo (0) against text probe (1), taken in the direction
    in which the text moves the unit (above 0.5: the text moves it further than the placebo), the
    smallest over the scenario's placebos; ``placebo_q`` the largest BH q of those comparisons.
    ``text_detector``: q < ALPHA, placebo_d > 0.5 and placebo_q < ALPHA, i.e. writing moves the
    unit beyond what the occlusion alone does (NA without placebos).
    """
    frames = []
    for layer in acts.values:
        clean = acts.get(layer, CLEAN)
        for scenario in acts.variants[1:]:
            probe = acts.get(layer, scenario)
            t = unit_table(clean, probe)
            null = permutation_null_d(clean, probe, n_perm, seed)
            t["null_threshold"] = null_threshold(null.ravel(), NULL_QUANTILE)
            # A margin above rounding: identical sides give d = 0.5 up to one ulp.
            t["calibrated"] = t["d"] > t["null_threshold"] + CALIBRATION_MARGIN
            names = list(class_names) if layer == "logits" else [""] * len(t)
            t.insert(0, "class_name", names[: len(t)])
            t.insert(0, "scenario", scenario)
            t.insert(0, "layer", layer)
            t.insert(0, "model", acts.model)
            frames.append(t)
    table = pd.concat(frames, ignore_index=True)
    table = table[["model", "layer", "scenario", "unit", "class_name", *table.columns[5:]]]
    _add_placebo_columns(table, acts)
    return table[TABLE_COLUMNS]


def _add_placebo_columns(table: pd.DataFrame, acts: Activations) -> None:
    table["placebo_d"] = np.nan
    table["placebo_q"] = np.nan
    table["text_detector"] = pd.Series(pd.NA, index=table.index, dtype="boolean")
    placebos: dict[str, list[str]] = {}
    for scenario in acts.variants[1:]:
        base = placebo_base(scenario)
        if base is not None and base in acts.variants:
            placebos.setdefault(base, []).append(scenario)
    for base, controls in placebos.items():
        for layer in acts.values:
            probe = acts.get(layer, base)
            rows = (table["layer"] == layer) & (table["scenario"] == base)
            raises = table.loc[rows, "auc"].to_numpy() >= 0.5  # the text's direction per unit
            ds, qs = [], []
            for control in controls:
                a, v = delong_variance(acts.get(layer, control), probe)
                ds.append(np.where(raises, a, 1.0 - a))  # > 0.5: text moves it beyond the placebo
                qs.append(bh_qvalues(delong_pvalue(a, v)))
            d_min, q_max = np.min(ds, axis=0), np.max(qs, axis=0)
            table.loc[rows, "placebo_d"] = d_min
            table.loc[rows, "placebo_q"] = q_max
            beyond = (d_min > 0.5) & (q_max < ALPHA)
            table.loc[rows, "text_detector"] = (table.loc[rows, "q"].to_numpy() < ALPHA) & beyond


def class_table(acts: Activations, class_names: Sequence[str]) -> pd.DataFrame:
    """Per scenario and output class: mean softmax probability change and flip rate."""
    frames = []
    for scenario in acts.variants[1:]:
        _, per_class = output_metrics(
            acts.get("logits", CLEAN), acts.get("logits", scenario), acts.labels, class_names
        )
        per_class.insert(0, "scenario", scenario)
        per_class.insert(0, "model", acts.model)
        frames.append(per_class)
    return pd.concat(frames, ignore_index=True)


def output_summary(acts: Activations, class_names: Sequence[str], k: int = 3) -> pd.DataFrame:
    """Per scenario: top-1 accuracy clean and probe (percent), in_w_gap, carton_gap,
    delta_p_carton, the share of changed predictions and the top ``k`` flip classes."""
    rows = []
    for scenario in acts.variants[1:]:
        m, per_class = output_metrics(
            acts.get("logits", CLEAN),
            acts.get("logits", scenario),
            acts.labels,
            class_names,
            CARTON_INDEX if len(class_names) > CARTON_INDEX else None,
        )
        flips = top_flip_classes(per_class, k)
        rows.append(
            {
                "model": acts.model,
                "scenario": scenario,
                "acc_clean": m.acc_clean,
                "acc_probe": m.acc_probe,
                "in_w_gap": m.in_w_gap,
                "carton_gap": m.carton_gap,
                "delta_p_carton": m.delta_p_carton,
                "changed_rate": m.changed_rate,
                "top_flips": "; ".join(
                    f"{r.class_name} ({r.flip_rate:.3f})" for r in flips.itertuples()
                ),
            }
        )
    return pd.DataFrame(rows)


def stability_table(acts: Activations, k: int = 20, seed: int = 0) -> pd.DataFrame:
    """Jaccard overlap of the top-``k`` units by d: between random halves of the images (per
    scenario and layer) and between scenarios (per layer, all images)."""
    rows = []
    d_all: dict[tuple[str, str], np.ndarray] = {}
    for layer in acts.values:
        clean = acts.get(layer, CLEAN)
        kk = min(k, clean.shape[1])
        for scenario in acts.variants[1:]:
            probe = acts.get(layer, scenario)
            d_all[layer, scenario] = differentiability(auc(clean, probe))
            half = split_half_stability(clean, probe, kk, seed) if clean.shape[0] >= 4 else np.nan
            rows.append(
                {"layer": layer, "a": scenario, "b": "(random half)", "k": kk, "jaccard": half}
            )
        scenarios = acts.variants[1:]
        for i, a in enumerate(scenarios):
            for b in scenarios[i + 1 :]:
                jac = topk_jaccard(d_all[layer, a], d_all[layer, b], kk)
                rows.append({"layer": layer, "a": a, "b": b, "k": kk, "jaccard": jac})
    out = pd.DataFrame(rows)
    out.insert(0, "model", acts.model)
    return out
