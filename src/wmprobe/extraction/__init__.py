"""Activations: one batched pass over clean frames and their probes, and the on-disk cache."""

from wmprobe.extraction.activations import Activations, extract
from wmprobe.extraction.cache import ActivationCache, default_cache_dir

__all__ = ["ActivationCache", "Activations", "default_cache_dir", "extract"]
