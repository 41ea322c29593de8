"""wmprobe: does a vision model detect watermarks instead of objects? Measure it, then remove it.

Example:
    >>> import wmprobe
    >>> result = wmprobe.audit("../shared/data/imagenet-samples", limit=50)  # doctest: +SKIP
    >>> result.counts()  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from .activations import Activations, extract
from .analysis import Study, load_study
from .artifacts import PRESETS, ImageOverlay, TextArtifact
from .audit import THRESHOLDS, AuditResult, audit
from .cache import ActivationCache
from .errors import WmprobeError
from .generate import generate
from .images import ImageSet, load_frame, scan_folder
from .manifest import read_manifest
from .models import expand_models, list_models, load_model
from .probes import Scenario, resolve_scenarios
from .report import build_report
from .stats import auc, differentiability

__all__ = [
    "PRESETS",
    "ActivationCache",
    "THRESHOLDS",
    "Activations",
    "AuditResult",
    "ImageOverlay",
    "ImageSet",
    "Scenario",
    "Study",
    "TextArtifact",
    "WmprobeError",
    "audit",
    "auc",
    "build_report",
    "differentiability",
    "expand_models",
    "extract",
    "generate",
    "list_models",
    "load_study",
    "load_frame",
    "load_model",
    "read_manifest",
    "resolve_scenarios",
    "scan_folder",
]
