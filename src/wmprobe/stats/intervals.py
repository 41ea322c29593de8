"""Uncertainty of the per-unit AUC: DeLong variance, confidence intervals and p-values.

Functional like :mod:`wmprobe.stats.core`: a clean matrix ``[n_clean, n_units]`` (label 0) and a
probe
matrix ``[n_probe, n_units]`` (label 1) in, one value per unit out.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.special import ndtri
from scipy.stats import norm

from wmprobe.errors import InvalidArgumentError
from wmprobe.stats.rank import as_pair, placements, sorted_key_chunks, u_statistics

__all__ = [
    "auc_ci",
    "auc_pvalue",
    "bootstrap_auc",
    "delong_interval",
    "delong_pvalue",
    "delong_variance",
]


def _at_least_two(c: np.ndarray, p: np.ndarray) -> None:
    for x, name in ((c, "clean"), (p, "probe")):
        if x.shape[0] < 2:
            raise InvalidArgumentError(
                f"Expected argument `{name}` to have at least 2 rows but got {x.shape[0]}"
            )


def _check_level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise InvalidArgumentError(f"Expected argument `level` to be in (0, 1) but got {level!r}")
    return float(level)


def delong_variance(clean: np.ndarray, probe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUC and its DeLong (1988) variance for every unit, from the structural components.

    Args:
        clean: ``[n_clean, n_units]`` activations, label 0 (at least 2 rows).
        probe: ``[n_probe, n_units]`` activations, label 1 (at least 2 rows).

    Returns:
        ``(auc, var)``, two float64 arrays ``[n_units]``; ``var = S10 / n_probe + S01 / n_clean``
        with ``S10``, ``S01`` the sample variances (ddof=1) of the placement values.

    Example:
        >>> a, v = delong_variance(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0]))
        >>> float(a[0]), round(float(v[0]), 6)
        (0.75, 0.083333)
    """
    c, p = as_pair(clean, probe)
    _at_least_two(c, p)
    n0, n1 = c.shape[0], p.shape[0]
    auc = np.empty(c.shape[1])
    var = np.empty(c.shape[1])
    for units, k in sorted_key_chunks(c, p):
        v10, v01 = placements(k, n0, n1)
        auc[units] = v10.mean(axis=1)
        var[units] = v10.var(axis=1, ddof=1) / n1 + v01.var(axis=1, ddof=1) / n0
    return auc, var


def delong_pvalue(auc: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Two-sided p-value of H0: AUC = 0.5 from ``z = (auc - 0.5) / sqrt(var)``.

    A zero variance (perfect separation, or a constant unit) gives p = 1 when the AUC is 0.5 and
    p = 0 otherwise.

    Example:
        >>> delong_pvalue(np.array([0.5, 0.6, 0.9]), np.array([0.01, 0.0025, 0.0]))
        array([1.        , 0.04550026, 0.        ])
    """
    a = np.asarray(auc, dtype=np.float64)
    v = np.asarray(var, dtype=np.float64)
    dev = np.abs(a - 0.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(v > 0, dev / np.sqrt(np.maximum(v, 0.0)), np.where(dev > 0, np.inf, 0.0))
    return 2.0 * norm.sf(z)


def delong_interval(
    auc: np.ndarray, var: np.ndarray, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Normal interval ``auc -+ z * sqrt(var)`` at ``level``, clipped to [0, 1].

    Example:
        >>> delong_interval(np.array([0.9]), np.array([0.0025]))
        (array([0.8020018]), array([0.9979982]))
    """
    level = _check_level(level)
    a = np.asarray(auc, dtype=np.float64)
    half = ndtri(0.5 + level / 2.0) * np.sqrt(np.maximum(np.asarray(var, dtype=np.float64), 0.0))
    return np.clip(a - half, 0.0, 1.0), np.clip(a + half, 0.0, 1.0)


def auc_pvalue(clean: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """Per-unit two-sided p-value of H0: AUC = 0.5 (DeLong z test), float64 ``[n_units]``.

    Example:
        >>> auc_pvalue(np.arange(10.0), np.arange(10.0) + 0.5).round(3)
        array([0.712])
    """
    return delong_pvalue(*delong_variance(clean, probe))


def bootstrap_auc(
    clean: np.ndarray, probe: np.ndarray, n_boot: int = 1000, seed: int = 0, paired: bool = False
) -> np.ndarray:
    """AUC of every unit on ``n_boot`` stratified resamples, float64 ``[n_boot, n_units]``.

    Clean and probe rows are resampled separately (the class sizes stay fixed). With
    ``paired=True`` row ``i`` of both matrices is one image and image indices are resampled
    jointly. Each replicate is one vectorised AUC over all units.

    Example:
        >>> clean = np.array([[0.1, 5.0], [0.2, 4.0], [0.3, 6.0], [0.4, 5.0]])
        >>> probe = np.array([[0.9, 5.5], [0.8, 4.5], [0.7, 5.0], [0.6, 4.0]])
        >>> boot = bootstrap_auc(clean, probe, n_boot=200, seed=0)
        >>> boot.shape, float(boot[:, 0].min())
        ((200, 2), 1.0)
    """
    c, p = as_pair(clean, probe)
    if int(n_boot) < 1:
        raise InvalidArgumentError(
            f"Expected argument `n_boot` to be a positive integer but got {n_boot!r}"
        )
    n0, n1 = c.shape[0], p.shape[0]
    if paired and n0 != n1:
        raise InvalidArgumentError(
            "Expected arguments `clean` and `probe` to have the same number of rows when "
            f"paired=True but got {n0} and {n1}"
        )
    rng = np.random.default_rng(seed)
    out = np.empty((int(n_boot), c.shape[1]))
    for b in range(int(n_boot)):
        i0 = rng.integers(0, n0, n0)
        i1 = i0 if paired else rng.integers(0, n1, n1)
        out[b] = u_statistics(c[i0], p[i1]) / (n0 * n1)
    return out


def auc_ci(
    clean: np.ndarray,
    probe: np.ndarray,
    level: float = 0.95,
    method: Literal["delong", "bootstrap"] = "delong",
    n_boot: int = 1000,
    seed: int = 0,
    paired: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided confidence interval of every unit's AUC, clipped to [0, 1].

    Args:
        clean: ``[n_clean, n_units]`` activations, label 0.
        probe: ``[n_probe, n_units]`` activations, label 1.
        level: coverage, in (0, 1).
        method: ``"delong"`` (normal interval ``auc +- z * sqrt(var)``) or ``"bootstrap"``
            (percentile interval of a stratified bootstrap, see :func:`bootstrap_auc`).
        n_boot, seed, paired: bootstrap settings; ignored by ``"delong"``.

    Returns:
        ``(low, high)``, two float64 arrays ``[n_units]``.

    Example:
        >>> low, high = auc_ci(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0]))
        >>> round(float(low[0]), 3), round(float(high[0]), 3)
        (0.184, 1.0)
    """
    level = _check_level(level)
    if method == "delong":
        return delong_interval(*delong_variance(clean, probe), level)
    if method == "bootstrap":
        boot = bootstrap_auc(clean, probe, n_boot=n_boot, seed=seed, paired=paired)
        low, high = np.quantile(boot, [0.5 - level / 2.0, 0.5 + level / 2.0], axis=0)
        return np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
    raise InvalidArgumentError(
        f"Expected argument `method` to be 'delong' or 'bootstrap' but got {method!r}"
    )
