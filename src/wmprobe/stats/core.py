"""Statistics on activations: AUC ROC per unit and what follows from it (functional, arrays in/out).

Every function takes a clean matrix ``[n_clean, n_units]`` and a probe matrix ``[n_probe, n_units]``
(clean is label 0, probe is label 1) and works on all units at once. When row ``i`` of both is the
same image (``n_clean == n_probe``), the paired statistics apply too. Intervals and p-values live in
:mod:`wmprobe.stats.intervals` and are re-exported here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from wmprobe.constants import THRESHOLDS
from wmprobe.errors import InvalidArgumentError
from wmprobe.stats.intervals import (
    auc_ci,
    auc_pvalue,
    bootstrap_auc,
    delong_interval,
    delong_pvalue,
    delong_variance,
)
from wmprobe.stats.rank import as_pair, u_statistics

__all__ = [
    "PairedEffect",
    "TextSpecificity",
    "auc",
    "auc_ci",
    "auc_pvalue",
    "bh_qvalues",
    "bootstrap_auc",
    "calibrated_flags",
    "count_above",
    "delong_interval",
    "delong_pvalue",
    "delong_variance",
    "differentiability",
    "null_threshold",
    "paired_effect",
    "split_half_d",
    "split_half_stability",
    "text_specific",
    "topk_jaccard",
    "unit_table",
]

UNIT_TABLE_COLUMNS = [
    "unit", "auc", "d", "ci_low", "ci_high", "p", "q", "mean_diff", "std_diff", "wilcoxon_p",
]  # fmt: skip


def auc(clean: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """AUC ROC of every unit, clean = 0 and probe = 1, ties counted half (Mann-Whitney U).

    One sort per unit (float32 keys when the data allow), so thousands of units take milliseconds;
    equal to ``sklearn.metrics.roc_auc_score`` on each column.

    Args:
        clean: activations on clean images, shape ``[n_clean, n_units]`` (or ``[n_clean]``).
        probe: activations on probe images, shape ``[n_probe, n_units]`` (or ``[n_probe]``).

    Returns:
        float64 array of shape ``[n_units]``: P(probe > clean) + 0.5 P(probe == clean).

    Example:
        >>> auc(np.array([0.0, 1.0]), np.array([1.0, 2.0]))
        array([0.875])
    """
    c, p = as_pair(clean, probe, check_finite=False)  # u_statistics checks in its own passes
    return u_statistics(c, p, names=("clean", "probe")) / (c.shape[0] * p.shape[0])


def differentiability(auc_values: np.ndarray) -> np.ndarray:
    """d = max(AUC, 1 - AUC): how well a unit tells the two sets apart, whichever way it moves.

    Example:
        >>> differentiability(np.array([0.2, 0.5, 0.9]))
        array([0.8, 0.5, 0.9])
    """
    a = np.asarray(auc_values, dtype=np.float64)
    return np.maximum(a, 1.0 - a)


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (adjusted p-values) over all entries of ``p``, same shape.

    ``q_(i) = min_{j >= i} p_(j) * m / j``, monotone in ``p`` and clipped to 1; equal to
    ``scipy.stats.false_discovery_control(p, method="bh")``. A unit is a discovery at FDR level
    ``alpha`` when ``q <= alpha``.

    Example:
        >>> bh_qvalues(np.array([0.01, 0.04, 0.03, 0.5]))
        array([0.04      , 0.05333333, 0.05333333, 0.5       ])
    """
    arr = np.asarray(p, dtype=np.float64)
    if not np.all((arr >= 0.0) & (arr <= 1.0)):  # NaN fails too
        raise InvalidArgumentError(
            "Expected argument `p` to hold p-values in [0, 1] but got other values"
        )
    flat = arr.ravel()
    m = flat.size
    order = np.argsort(flat, kind="stable")
    scaled = flat[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    q = np.empty_like(flat)
    q[order] = q_sorted
    return q.reshape(arr.shape)


def null_threshold(null_d: np.ndarray, quantile: float = 0.999) -> float:
    """Calibrated d threshold: the ``quantile`` of the d values of one layer on the null scenario.

    The null scenario shows the model two sets with no text difference, so its d values are what
    chance alone produces for this layer and image count; a unit is flagged when its d exceeds the
    threshold (see :func:`calibrated_flags`). Linear interpolation between order statistics.

    Example:
        >>> null_threshold(np.array([0.5, 0.52, 0.55, 0.6, 0.7]), quantile=0.75)
        0.6
    """
    d = np.asarray(null_d, dtype=np.float64).ravel()
    if d.size == 0 or not np.isfinite(d).all():
        raise InvalidArgumentError(
            "Expected argument `null_d` to be a non-empty finite array but it is not"
        )
    if not 0.0 < float(quantile) <= 1.0:
        raise InvalidArgumentError(
            f"Expected argument `quantile` to be in (0, 1] but got {quantile!r}"
        )
    return float(np.quantile(d, quantile))


def calibrated_flags(d: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean array, same shape as ``d``: the units whose d is strictly above ``threshold``.

    Example:
        >>> calibrated_flags(np.array([0.55, 0.61, 0.9]), 0.6)
        array([False,  True,  True])
    """
    return np.asarray(d, dtype=np.float64) > float(threshold)


def count_above(d: np.ndarray, thresholds: tuple[float, ...] = THRESHOLDS) -> dict[float, int]:
    """Number of units with d strictly above each threshold (NaN counts as not above).

    The one count of sensitive units: audit counts, study tables and mitigation sweeps use it.

    Example:
        >>> count_above(np.array([0.5, 0.75, 0.85, 0.97]))
        {0.7: 3, 0.8: 2, 0.9: 1, 0.95: 1}
    """
    arr = np.asarray(d, dtype=np.float64)
    return {float(t): int(np.count_nonzero(arr > t)) for t in thresholds}


def _top_k(scores: np.ndarray, k: int, name: str) -> set[int]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    if not 1 <= int(k) <= s.size:
        raise InvalidArgumentError(f"Expected argument `k` to be in [1, {s.size}] but got {k!r}")
    if np.isnan(s).any():
        raise InvalidArgumentError(f"Expected argument `{name}` to hold no NaN but it does")
    return set(np.argsort(-s, kind="stable")[: int(k)].tolist())  # ties: lower index first


def topk_jaccard(scores_a: np.ndarray, scores_b: np.ndarray, k: int) -> float:
    """Jaccard overlap ``|A & B| / |A | B|`` of the top-``k`` units (indices) by two score arrays.

    Ties at the cut go to the lower unit index.

    Example:
        >>> topk_jaccard(np.array([0.9, 0.8, 0.1, 0.7]), np.array([0.9, 0.1, 0.8, 0.7]), k=2)
        0.3333333333333333
    """
    if np.shape(scores_a) != np.shape(scores_b):
        raise InvalidArgumentError(
            "Expected arguments `scores_a` and `scores_b` to have the same shape but got "
            f"{np.shape(scores_a)} and {np.shape(scores_b)}"
        )
    a, b = _top_k(scores_a, k, "scores_a"), _top_k(scores_b, k, "scores_b")
    return len(a & b) / len(a | b)


def split_half_d(
    clean: np.ndarray, probe: np.ndarray, seed: int = 0, paired: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """d of every unit on two random halves of the images: ``(d_first_half, d_second_half)``.

    The halves depend only on the row counts and ``seed``, so blocks of units taken apart give
    the same halves as the whole matrix. ``paired``: see :func:`split_half_stability`.

    Example:
        >>> clean = np.array([[0.1, 5.0], [0.2, 4.0], [0.3, 6.0], [0.4, 5.0]])
        >>> probe = np.array([[0.9, 5.5], [0.8, 4.5], [0.7, 5.0], [0.6, 4.0]])
        >>> split_half_d(clean, probe, seed=0)
        (array([1.   , 0.625]), array([1.   , 0.625]))
    """
    c, p = as_pair(clean, probe)
    n0, n1 = c.shape[0], p.shape[0]
    if min(n0, n1) < 2:
        raise InvalidArgumentError(
            f"Expected at least 2 rows in `clean` and `probe` but got {n0} and {n1}"
        )
    paired = (n0 == n1) if paired is None else paired
    if paired and n0 != n1:
        raise InvalidArgumentError(
            f"Expected as many clean as probe rows when paired but got {n0} and {n1}"
        )
    rng = np.random.default_rng(seed)
    perm0 = rng.permutation(n0)
    perm1 = perm0 if paired else rng.permutation(n1)
    h0, h1 = n0 // 2, n1 // 2
    d_a = differentiability(auc(c[perm0[:h0]], p[perm1[:h1]]))
    d_b = differentiability(auc(c[perm0[h0:]], p[perm1[h1:]]))
    return d_a, d_b


def split_half_stability(
    clean: np.ndarray, probe: np.ndarray, k: int, seed: int = 0, paired: bool | None = None
) -> float:
    """Jaccard overlap of the top-``k`` units by d computed on two random halves of the images.

    Near 1: the ranking of units is a property of the model, not of the image sample. With
    ``paired`` (default: when both matrices have the same number of rows) the same image indices
    go to a half in both matrices; otherwise each matrix is split on its own.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> c = rng.normal(size=(200, 50)); p = rng.normal(size=(200, 50))
        >>> p[:, :5] += 2.0
        >>> split_half_stability(c, p, k=5)
        1.0
    """
    return topk_jaccard(*split_half_d(clean, probe, seed, paired), k)


@dataclass(frozen=True)
class TextSpecificity:
    """Per-unit arrays ``[n_units]`` separating text detectors from box (patch) detectors."""

    auc: np.ndarray  # probe (1) vs clean (0)
    d: np.ndarray
    auc_vs_placebo: np.ndarray  # probe (1) vs placebo (0): the text itself, the box held fixed
    d_vs_placebo: np.ndarray
    auc_placebo: np.ndarray  # placebo (1) vs clean (0): reaction to the box alone
    specific: np.ndarray  # bool: d and d_vs_placebo above the threshold, same direction


def text_specific(
    clean: np.ndarray, probe: np.ndarray, placebo: np.ndarray, threshold: float = 0.8
) -> TextSpecificity:
    """Does a unit react to the text, or just to a box drawn where the text was?

    ``placebo`` holds the same images with the same box filled by a non-text patch. A unit counts
    as a text detector (``specific``) when both d (probe vs clean) and d (probe vs placebo) are
    strictly above ``threshold`` and both AUCs lie on the same side of 0.5.

    Example:
        >>> c = np.zeros((4, 2)); box = c + [1.0, 0.0]; text = c + [1.0, 1.0]
        >>> text_specific(c, text, box).specific
        array([False,  True])
    """
    c, p = as_pair(clean, probe)
    _, b = as_pair(clean, placebo, ("clean", "placebo"))
    a, a_vs, a_box = auc(c, p), auc(b, p), auc(c, b)
    d, d_vs = differentiability(a), differentiability(a_vs)
    same_side = np.sign(a - 0.5) == np.sign(a_vs - 0.5)
    specific = (d > threshold) & (d_vs > threshold) & same_side
    return TextSpecificity(a, d, a_vs, d_vs, a_box, specific)


@dataclass(frozen=True)
class PairedEffect:
    """Per-unit paired statistics, float64 arrays ``[n_units]``; diff = probe - clean, per image."""

    mean_diff: np.ndarray
    std_diff: np.ndarray  # mean diff / sd of diffs (ddof=1); 0 when all diffs are 0, +-inf if sd 0
    wilcoxon_p: np.ndarray  # two-sided signed-rank p-value (see _wilcoxon_p); 1 if all diffs are 0


def paired_effect(clean: np.ndarray, probe: np.ndarray) -> PairedEffect:
    """Paired effect of the probe on each unit: row ``i`` of both matrices is the same image.

    Example:
        >>> e = paired_effect(np.zeros((3, 1)), np.array([[1.0], [2.0], [3.0]]))
        >>> float(e.mean_diff[0]), float(e.std_diff[0]), float(e.wilcoxon_p[0])
        (2.0, 2.0, 0.25)
    """
    c, p = as_pair(clean, probe)
    if c.shape[0] != p.shape[0] or c.shape[0] < 2:
        raise InvalidArgumentError(
            "Expected arguments `clean` and `probe` to have the same number of rows (at least 2, "
            f"one per image) but got {c.shape[0]} and {p.shape[0]}"
        )
    diff = p.astype(np.float64) - c.astype(np.float64)
    mean = diff.mean(axis=0)
    sd = diff.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        std_diff = np.where(sd > 0, mean / sd, np.where(mean == 0, 0.0, np.sign(mean) * np.inf))
    return PairedEffect(mean, std_diff, _wilcoxon_p(diff))


def _wilcoxon_p(diff: np.ndarray) -> np.ndarray:
    """Two-sided signed-rank p-value per column, scipy's ``method="auto"`` decided per unit.

    Exact null distribution for at most 50 images without zero or tied differences, otherwise
    the normal approximation with tie and continuity correction (scipy's permutation fallback
    for tiny samples is not used). 1 for a unit whose differences are all zero.
    """
    n = diff.shape[0]
    nonzero = diff.any(axis=0)
    exact = np.zeros(diff.shape[1], dtype=bool)
    if n <= 50:
        mag = np.sort(np.abs(diff), axis=0)
        exact = (mag[0] > 0) & ~(mag[1:] == mag[:-1]).any(axis=0)
    out = np.ones(diff.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for method, cols in (("exact", exact), ("asymptotic", nonzero & ~exact)):
            if cols.any():
                out[cols] = wilcoxon(diff[:, cols], axis=0, method=method).pvalue
    return out


def unit_table(clean: np.ndarray, probe: np.ndarray, level: float = 0.95) -> pd.DataFrame:
    """One row per unit: unit, auc, d, ci_low, ci_high, p, q, mean_diff, std_diff, wilcoxon_p.

    ``ci_low``/``ci_high``: DeLong interval at ``level``; ``p``: DeLong test of AUC = 0.5;
    ``q``: Benjamini-Hochberg over the units of this table. The paired columns are NaN unless
    both matrices have the same number of rows (one per image). The caller adds model, layer and
    scenario columns.

    Example:
        >>> t = unit_table(np.zeros((4, 2)), np.array([[0.0, 1], [0, 2], [0, 3], [0, 4]]))
        >>> t[["unit", "auc", "d", "p"]].to_dict("list")
        {'unit': [0, 1], 'auc': [0.5, 1.0], 'd': [0.5, 1.0], 'p': [1.0, 0.0]}
    """
    c, p = as_pair(clean, probe)
    a, v = delong_variance(c, p)
    low, high = delong_interval(a, v, level)
    pv = delong_pvalue(a, v)
    if c.shape[0] == p.shape[0]:
        eff = paired_effect(c, p)
        paired = (eff.mean_diff, eff.std_diff, eff.wilcoxon_p)
    else:
        paired = tuple(np.full(c.shape[1], np.nan) for _ in range(3))
    cols = [np.arange(c.shape[1]), a, differentiability(a), low, high, pv, bh_qvalues(pv)]
    return pd.DataFrame(dict(zip(UNIT_TABLE_COLUMNS, [*cols, *paired], strict=True)))
