"""Activations: one batched pass over clean frames and their probes, and the on-disk cache.

Example:
    >>> from wmprobe.extraction import ActivationCache, extract
    >>> from wmprobe.models import load_model
    >>> from wmprobe.probes import Scenario, scan_folder
    >>> acts = extract(load_model("efficientnet_lite0"), scan_folder("IMAGES").records,
    ...                [Scenario.preset("chinese")], cache=ActivationCache())  # doctest: +SKIP
    >>> acts.get("features", "chinese").shape  # doctest: +SKIP
    (998, 1280)
"""

from wmprobe.extraction.activations import Activations, extract
from wmprobe.extraction.cache import ActivationCache, default_cache_dir

__all__ = ["ActivationCache", "Activations", "default_cache_dir", "extract"]
