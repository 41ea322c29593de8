"""The report: the paper's figures (pure functions) and one self-contained HTML page of a study."""

from wmprobe.reporting.build import Report, build_report

__all__ = ["Report", "build_report"]
