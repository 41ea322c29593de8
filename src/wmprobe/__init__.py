"""wmprobe: does a vision model detect watermarks instead of objects? Measure it, then remove it."""

from __future__ import annotations

__version__ = "0.1.0"
