"""An audit run: probe sets -> activations -> tables, evidence, summary, gates."""

from wmprobe.auditing.run import THRESHOLDS, AuditResult, audit

__all__ = ["THRESHOLDS", "AuditResult", "audit"]
