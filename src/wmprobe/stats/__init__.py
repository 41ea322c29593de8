"""Statistics, the functional core (arrays in, arrays out): AUC and d of every unit, intervals and
p-values, BH q-values, null thresholds, paired effects and stability. ImageNet-W style output
metrics (top-1 gaps, flip rates) are in :mod:`wmprobe.stats.output_metrics`.

Example:
    >>> import numpy as np
    >>> from wmprobe.stats import auc, count_above, differentiability
    >>> clean = np.array([[0.1, 5.0], [0.2, 4.0], [0.3, 6.0], [0.4, 5.0]])  # [images, units]
    >>> probe = np.array([[0.9, 5.5], [0.8, 4.5], [0.7, 5.0], [0.6, 4.0]])
    >>> auc(clean, probe)
    array([1.     , 0.40625])
    >>> count_above(differentiability(auc(clean, probe)))
    {0.7: 1, 0.8: 1, 0.9: 1, 0.95: 1}
"""

from wmprobe.stats.core import (
    PairedEffect,
    TextSpecificity,
    auc,
    bh_qvalues,
    calibrated_flags,
    count_above,
    differentiability,
    null_threshold,
    paired_effect,
    split_half_d,
    split_half_stability,
    text_specific,
    topk_jaccard,
    unit_table,
)
from wmprobe.stats.intervals import (
    auc_ci,
    auc_pvalue,
    bootstrap_auc,
    delong_interval,
    delong_pvalue,
    delong_variance,
)

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
