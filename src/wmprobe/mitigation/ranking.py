"""Which backbone features to leave out: units ranked by their watermark sensitivity, or at random.

A ranking is an order of the feature units, most sensitive first; leaving out a fraction f of the
units leaves out the first ``round(f * n_units)`` of that order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from wmprobe.errors import MitigationError
from wmprobe.stats.core import auc, differentiability

#: How units can be ranked (see :func:`rank_units`).
RANKINGS = ("d", "max", "null")


def unit_d(clean: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """d of every unit: clean ``[n, units]`` (label 0) against probe ``[n, units]`` (label 1)."""
    return differentiability(auc(clean, probe))


def rank_units(
    d: Mapping[str, np.ndarray] | np.ndarray,
    *,
    method: str = "d",
    null_d: np.ndarray | None = None,
    null_quantile: float = 0.95,
) -> np.ndarray:
    """Unit indices, most watermark-sensitive first (ties keep the unit order).

    Args:
        d: d per unit ``[n_units]``, or a mapping scenario -> d per unit.
        method: ``d`` (d of the one scenario; with a mapping, its first entry), ``max`` (the
            largest d over the scenarios of the mapping) or ``null`` (how far the score of ``max``
            exceeds the ``null_quantile`` of the null: ``score - quantile(null_d, q, axis=0)``).
        null_d: d of every unit under the null (no watermark effect), ``[n_draws, n_units]``
            (e.g. pairs relabelled at random, or placebo probe sets) or ``[n_units]`` (one draw,
            whose quantile is the draw itself).
        null_quantile: the quantile of the null that a unit has to exceed.

    Returns:
        int64 array ``[n_units]``, a permutation of ``range(n_units)``.

    Example:
        >>> rank_units(np.array([0.5, 0.9, 0.7])).tolist()
        [1, 2, 0]
    """
    if method not in RANKINGS:
        raise MitigationError(f"Unknown ranking {method!r}; known: {', '.join(RANKINGS)}.")
    if isinstance(d, Mapping):
        if not d:
            raise MitigationError(
                "Expected argument `d` to hold at least one scenario but got none"
            )
        arrays = [np.asarray(v, dtype=np.float64) for v in d.values()]
    else:
        arrays = [np.asarray(d, dtype=np.float64)]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 1:
        raise MitigationError(
            f"Expected every d array to be 1-D with one value per unit but got shapes {shapes}"
        )
    score = arrays[0] if method == "d" else np.max(np.stack(arrays), axis=0)
    if method == "null":
        if null_d is None:
            raise MitigationError(
                "Ranking `null` needs the units' d under the null (argument `null_d`)."
            )
        null = np.asarray(null_d, dtype=np.float64)
        null = null[None, :] if null.ndim == 1 else null
        if null.ndim != 2 or null.shape[1] != score.shape[0]:
            raise MitigationError(
                f"Expected argument `null_d` to have shape [n_draws, {score.shape[0]}] or "
                f"[{score.shape[0]}] but got {np.shape(null_d)}"
            )
        if not 0.0 < null_quantile < 1.0:
            raise MitigationError(
                f"Expected argument `null_quantile` to be in (0, 1) but got {null_quantile}"
            )
        score = score - np.quantile(null, null_quantile, axis=0)
    return np.argsort(-score, kind="stable").astype(np.int64)


def n_left_out(fraction: float, n_units: int) -> int:
    """How many units a fraction leaves out: ``round(fraction * n_units)``."""
    return int(round(fraction * n_units))


def check_fractions(fractions: Sequence[float]) -> list[float]:
    """Fractions as a sorted list without duplicates, each in [0, 1)."""
    out = sorted({float(f) for f in fractions})
    if not out:
        raise MitigationError(
            "Expected argument `fractions` to hold at least one value but got none"
        )
    bad = [f for f in out if not 0.0 <= f < 1.0]
    if bad:
        raise MitigationError(f"Expected every fraction to be in [0, 1) but got {bad}")
    return out


def kept_units(order: np.ndarray, fraction: float) -> np.ndarray:
    """The units a head may use when ``fraction`` of them is left out in ``order`` (sorted)."""
    k = n_left_out(fraction, len(order))
    return np.sort(order[k:])


def random_order(n_units: int, *, seed: int, draw: int) -> np.ndarray:
    """A random ranking (the baseline), the same for the same (seed, draw)."""
    rng = np.random.default_rng([int(seed), int(draw), 0xBA5E])
    return rng.permutation(n_units).astype(np.int64)
