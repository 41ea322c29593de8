"""Per-unit summary of the localization table, and the test that calls a unit ``localized``.

For each (model, layer, scenario, unit, method), over the images explained:

- ``p_chance``: one-sided Wilcoxon signed-rank test that the mass accuracy exceeds its chance
  level (box area / image area) on the same image;
- ``p_clean``: one-sided paired Wilcoxon signed-rank test that the mass on the probe exceeds the
  mass of the same unit's map on the clean image, measured in the same box;
- ``p``: the larger of the two (both must hold: an intersection-union test), and ``q`` its
  Benjamini-Hochberg value over all units explained with that method;
- ``localized``: ``q < 0.05``.

With a placebo audited, ``p_placebo`` tests (paired, one-sided) that the mass on the text probe
exceeds the mass on the placebo image (the same box filled with something that is not text), with
its BH ``q_placebo``; ``beyond_placebo`` is ``localized`` and ``q_placebo < 0.05``: the unit looks
at the writing more than at any occlusion of that box. Images where a map has no positive
relevance (mass NaN) are left out of that unit's tests and counted in ``images``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from wmprobe.stats import bh_qvalues

KEYS = ["model", "layer", "scenario", "unit", "method"]


def wilcoxon_greater(x: np.ndarray, y: np.ndarray) -> float:
    """One-sided Wilcoxon signed-rank p of ``x > y`` (paired); NaN pairs dropped; 1.0 when every
    difference is zero; NaN with fewer than 2 pairs.

    Example:
        >>> round(wilcoxon_greater(np.array([0.9, 0.8, 0.7, 0.95, 0.85]), np.full(5, 0.1)), 4)
        0.0312
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    diff = x[ok] - y[ok]
    if diff.size < 2:
        return float("nan")
    if not np.any(diff != 0):
        return 1.0
    return float(wilcoxon(diff, alternative="greater", zero_method="wilcox").pvalue)


def _qvalues(p: pd.Series, groups: pd.Series) -> pd.Series:
    q = pd.Series(np.nan, index=p.index)
    for _, idx in p.groupby(groups).groups.items():
        values = p.loc[idx].to_numpy(dtype=np.float64)
        ok = np.isfinite(values)
        if ok.any():
            out = np.full(values.shape, np.nan)
            out[ok] = bh_qvalues(values[ok])
            q.loc[idx] = out
    return q


def unit_summary(rows: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """One row per (model, layer, scenario, unit, method) of ``localization.parquet`` rows."""
    out = []
    has_placebo = "placebo_mass" in rows.columns
    for key, g in rows.groupby(KEYS, sort=False):
        rec = dict(zip(KEYS, key, strict=True))
        rec.update(
            images=len(g),
            mass=float(g["mass"].mean()),
            rank_accuracy=float(g["rank_accuracy"].mean()),
            hit_rate=float(g["hit"].mean()),
            chance=float(g["chance"].mean()),
            clean_mass=float(g["clean_mass"].mean()),
            clean_rank_accuracy=float(g["clean_rank_accuracy"].mean()),
            clean_hit_rate=float(g["clean_hit"].mean()),
            p_chance=wilcoxon_greater(g["mass"].to_numpy(), g["chance"].to_numpy()),
            p_clean=wilcoxon_greater(g["mass"].to_numpy(), g["clean_mass"].to_numpy()),
        )
        if "iou" in g.columns and g["iou"].notna().any():
            rec.update(iou=float(g["iou"].mean()), clean_iou=float(g["clean_iou"].mean()))
        if has_placebo and g["placebo_mass"].notna().any():
            rec.update(
                placebo=str(g["placebo"].dropna().iloc[0]),
                placebo_mass=float(g["placebo_mass"].mean()),
                placebo_hit_rate=float(g["placebo_hit"].mean()),
                p_placebo=wilcoxon_greater(g["mass"].to_numpy(), g["placebo_mass"].to_numpy()),
            )
        out.append(rec)
    table = pd.DataFrame(out)
    if table.empty:
        return table
    table["p"] = table[["p_chance", "p_clean"]].max(axis=1, skipna=False)
    table["q"] = _qvalues(table["p"], table["method"])
    table["localized"] = table["q"] < alpha
    if "p_placebo" in table.columns:
        table["q_placebo"] = _qvalues(table["p_placebo"], table["method"])
        table["beyond_placebo"] = table["localized"] & (table["q_placebo"] < alpha)
    return table


def join_units(summary: pd.DataFrame, units: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with the audit's columns of each unit (``class_name``, ``auc``, ``d``, its
    ``q`` as ``audit_q``, ...) joined on (model, layer, scenario, unit)."""
    on = ["model", "layer", "scenario", "unit"]
    audit = units.rename(columns={c: f"audit_{c}" for c in units.columns if c in ("p", "q")})
    audit = audit.drop(columns=[c for c in audit.columns if c in summary.columns and c not in on])
    return summary.merge(audit, on=on, how="left")
