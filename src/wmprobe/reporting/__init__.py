"""The report: the paper's figures (pure functions returning a Figure), contact sheets of redrawn
probes, and one self-contained HTML page of a study (``wmprobe.report`` writes it).

Example:
    >>> from wmprobe.reporting import build_report
    >>> build_report("STUDY").html  # doctest: +SKIP
    PosixPath('STUDY/report/report.html')
"""

from wmprobe.reporting.build import Report, build_report

__all__ = ["Report", "build_report"]
