"""An audit run: probe sets -> activations -> per-unit tables, evidence, a summary and CI gates.

Example:
    >>> from wmprobe.auditing import parse_gate
    >>> [str(g) for g in parse_gate("features:d>0.9:count>10")]
    ['features:d>0.9:count>10']
"""

from wmprobe.auditing.gates import Gate, GateResult, any_tripped, evaluate_gates, parse_gate
from wmprobe.auditing.run import AuditResult, audit

__all__ = [
    "AuditResult",
    "Gate",
    "GateResult",
    "any_tripped",
    "audit",
    "evaluate_gates",
    "parse_gate",
]
