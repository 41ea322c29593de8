"""Mitigation: leave out the most watermark-sensitive backbone units when training a new head.

Example:
    >>> from wmprobe.mitigation import mitigate
    >>> run = mitigate("../shared/data/imagenet-samples",
    ...                "../shared/data/caltech-101")  # doctest: +SKIP
    >>> run.table()  # doctest: +SKIP
"""

from wmprobe.mitigation.downstream import (
    ImageFolderSet,
    resolve_downstream,
    scan_image_folder,
    split_indices,
)
from wmprobe.mitigation.export import MaskedHead, MitigatedModel, export_mitigated, load_mitigated
from wmprobe.mitigation.features import DownstreamFeatures, downstream_features, probe_set_features
from wmprobe.mitigation.heads import LinearHead, choose_C, fit_head
from wmprobe.mitigation.pipeline import MitigationRun, mitigate
from wmprobe.mitigation.ranking import random_order, rank_units, unit_d
from wmprobe.mitigation.study_step import reproduce_step
from wmprobe.mitigation.sweep import SweepConfig, SweepInputs, SweepResult, evaluate_head, run_sweep

__all__ = [
    "DownstreamFeatures",
    "ImageFolderSet",
    "LinearHead",
    "MaskedHead",
    "MitigatedModel",
    "MitigationRun",
    "SweepConfig",
    "SweepInputs",
    "SweepResult",
    "choose_C",
    "downstream_features",
    "evaluate_head",
    "export_mitigated",
    "fit_head",
    "load_mitigated",
    "mitigate",
    "probe_set_features",
    "random_order",
    "rank_units",
    "reproduce_step",
    "resolve_downstream",
    "run_sweep",
    "scan_image_folder",
    "split_indices",
    "unit_d",
]
