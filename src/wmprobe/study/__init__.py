"""Many runs: tables across models from run folders (analysis), the whole study
(``wmprobe.reproduce`` runs it), and checksum-verified downloads.

Example:
    >>> from wmprobe.study import load_study
    >>> study = load_study("STUDY")  # doctest: +SKIP
    >>> study.units().groupby("model")["d"].max()  # doctest: +SKIP
"""

from wmprobe.study.analysis import (
    ModelRun,
    Study,
    accuracy_drops,
    class_ranking,
    depth_profile,
    load_study,
    prediction_flips,
    read_run,
    sensitive_counts,
)
from wmprobe.study.downloads import download_dataset
from wmprobe.study.reproduce import StudyResult

__all__ = [
    "ModelRun",
    "Study",
    "StudyResult",
    "accuracy_drops",
    "class_ranking",
    "depth_profile",
    "download_dataset",
    "load_study",
    "prediction_flips",
    "read_run",
    "sensitive_counts",
]
