"""wmprobe: does a vision model detect watermarks instead of objects? Measure it, then remove it.

The top level holds the verbs (``audit``, ``explain``, ``generate``, ``mitigate``,
``reproduce``, ``report``, ``scan``), their result types, ``WmprobeError`` and ``__version__``;
everything else is imported from its stage's subpackage (``wmprobe.probes``, ``wmprobe.models``,
``wmprobe.extraction``, ``wmprobe.stats``, ``wmprobe.auditing``, ``wmprobe.study``,
``wmprobe.reporting``, ``wmprobe.mitigation``, ``wmprobe.scanning``, ``wmprobe.attribution``),
shared names from ``wmprobe.constants`` and errors from ``wmprobe.errors``. Names load on first
use, so ``import wmprobe`` imports no torch.

Example:
    >>> import wmprobe
    >>> from wmprobe._version import __version__
    >>> wmprobe.__version__ == __version__
    True
    >>> wmprobe.audit.__module__, wmprobe.report.__name__
    ('wmprobe.auditing.run', 'build_report')
    >>> result = wmprobe.audit("../shared/data/imagenet-samples", limit=50)  # doctest: +SKIP
    >>> result.counts()  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from wmprobe._version import __version__
from wmprobe.errors import WmprobeError

#: public name -> the module that defines it (loaded on first access, PEP 562).
_LAZY = {
    "audit": "wmprobe.auditing.run",
    "AuditResult": "wmprobe.auditing.run",
    "explain": "wmprobe.attribution.pipeline",
    "Explanation": "wmprobe.attribution.pipeline",
    "generate": "wmprobe.probes.generate",
    "GeneratedSet": "wmprobe.probes.generate",
    "mitigate": "wmprobe.mitigation.pipeline",
    "MitigationRun": "wmprobe.mitigation.pipeline",
    "reproduce": "wmprobe.study.reproduce",
    "StudyResult": "wmprobe.study.reproduce",
    "report": "wmprobe.reporting.build",
    "Report": "wmprobe.reporting.build",
    "scan": "wmprobe.scanning.run",
    "ScanResult": "wmprobe.scanning.run",
    "load_detector": "wmprobe.scanning.detector",
}

if TYPE_CHECKING:  # pragma: no cover
    from wmprobe.attribution.pipeline import Explanation, explain
    from wmprobe.auditing.run import AuditResult, audit
    from wmprobe.mitigation.pipeline import MitigationRun, mitigate
    from wmprobe.probes.generate import GeneratedSet, generate
    from wmprobe.reporting.build import Report
    from wmprobe.reporting.build import build_report as report
    from wmprobe.scanning.detector import load_detector
    from wmprobe.scanning.run import ScanResult, scan
    from wmprobe.study.reproduce import StudyResult, reproduce

__all__ = [
    "AuditResult",
    "Explanation",
    "GeneratedSet",
    "MitigationRun",
    "Report",
    "ScanResult",
    "StudyResult",
    "WmprobeError",
    "__version__",
    "audit",
    "explain",
    "generate",
    "load_detector",
    "mitigate",
    "report",
    "reproduce",
    "scan",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        attr = "build_report" if name == "report" else name
        value = getattr(import_module(_LAZY[name]), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'wmprobe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
