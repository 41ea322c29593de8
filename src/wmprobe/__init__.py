"""wmprobe: does a vision model detect watermarks instead of objects? Measure it, then remove it.

Example:
    >>> import wmprobe
    >>> result = wmprobe.audit("../shared/data/imagenet-samples", limit=50)  # doctest: +SKIP
    >>> result.counts()  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from .activations import Activations, extract
from .artifacts import PRESETS, TextArtifact
from .audit import THRESHOLDS, AuditResult, audit
from .cache import ActivationCache
from .errors import WmprobeError
from .images import ImageSet, load_frame, scan_folder
from .models import expand_models, list_models, load_model
from .probes import Scenario
from .stats import auc, differentiability

__all__ = [
    "PRESETS",
    "ActivationCache",
    "THRESHOLDS",
    "Activations",
    "AuditResult",
    "ImageSet",
    "Scenario",
    "TextArtifact",
    "WmprobeError",
    "audit",
    "auc",
    "differentiability",
    "expand_models",
    "extract",
    "list_models",
    "load_frame",
    "load_model",
    "scan_folder",
]
