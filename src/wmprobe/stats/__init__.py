"""Statistics, the functional core: AUC, d, intervals, q-values, null thresholds, metrics."""

from wmprobe.stats.core import *  # noqa: F403
from wmprobe.stats.core import __all__  # noqa: F401
