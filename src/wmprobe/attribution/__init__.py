"""Attribution: where a sensitive unit looks, scored against the exact box of the drawn mark.

``explain`` (the verb, :func:`wmprobe.explain`) runs it on an audit run folder; the pieces are
``maps`` (captum and zennit attribution, the activation map), ``scores`` (mass, rank accuracy,
pointing game, IoU), ``summary`` (the per-unit tests), ``overlays`` and ``canonizers``.
"""

from wmprobe.attribution.pipeline import Explanation, explain
from wmprobe.attribution.scores import BoxScores, score_map

__all__ = ["BoxScores", "Explanation", "explain", "score_map"]
