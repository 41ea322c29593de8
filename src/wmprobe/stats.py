"""Statistics on activations: AUC ROC per unit and differentiability (functional, arrays in/out).

Every function takes a clean matrix ``[n_clean, n_units]`` and a probe matrix ``[n_probe, n_units]``
(clean is label 0, probe is label 1) and works on all units at once.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

__all__ = ["auc", "differentiability"]


def _as_matrix(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(
            f"Expected argument `{name}` to be a 1-D or 2-D array but got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"Expected argument `{name}` to have at least one row but got 0")
    if not np.isfinite(arr).all():
        raise ValueError(f"Expected argument `{name}` to be finite but it holds NaN or inf")
    return arr


def auc(clean: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """AUC ROC of every unit, clean = 0 and probe = 1, ties counted half (Mann-Whitney U).

    Args:
        clean: activations on clean images, shape ``[n_clean, n_units]`` (or ``[n_clean]``).
        probe: activations on probe images, shape ``[n_probe, n_units]`` (or ``[n_probe]``).

    Returns:
        float64 array of shape ``[n_units]``: P(probe > clean) + 0.5 P(probe == clean).

    Example:
        >>> auc(np.array([0.0, 1.0]), np.array([1.0, 2.0]))
        array([0.875])
    """
    c = _as_matrix(clean, "clean")
    p = _as_matrix(probe, "probe")
    if c.shape[1] != p.shape[1]:
        raise ValueError(
            f"Expected arguments `clean` and `probe` to have the same number of units "
            f"but got {c.shape[1]} and {p.shape[1]}"
        )
    n0, n1 = c.shape[0], p.shape[0]
    ranks = rankdata(np.concatenate([c, p], axis=0), axis=0, method="average")
    rank_sum = ranks[n0:].sum(axis=0)
    return (rank_sum - n1 * (n1 + 1) / 2.0) / (n0 * n1)


def differentiability(auc_values: np.ndarray) -> np.ndarray:
    """d = max(AUC, 1 - AUC): how well a unit tells the two sets apart, whichever way it moves."""
    a = np.asarray(auc_values, dtype=np.float64)
    return np.maximum(a, 1.0 - a)
