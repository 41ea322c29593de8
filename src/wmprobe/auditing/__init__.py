"""An audit run: probe sets -> activations -> tables, evidence, summary, gates."""

from wmprobe.auditing.run import AuditResult, audit

__all__ = ["AuditResult", "audit"]
