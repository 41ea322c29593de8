"""Names and numbers that several stages share, each defined once (imports nothing of wmprobe).

Example:
    >>> from wmprobe.constants import DEFAULT_LAYERS, THRESHOLDS
    >>> THRESHOLDS
    (0.7, 0.8, 0.9, 0.95)
    >>> DEFAULT_LAYERS
    ('logits', 'features')
"""

from __future__ import annotations

__all__ = [
    "BLOCKS",
    "CALTECH256_URL",
    "CLEAN",
    "DEFAULT_LAYERS",
    "FEATURES",
    "LOGITS",
    "PAPER_FRACTIONS",
    "SPECIAL_LAYERS",
    "THRESHOLDS",
]

#: The paper's thresholds on d = max(AUC, 1 - AUC): units above each are counted.
THRESHOLDS: tuple[float, ...] = (0.7, 0.8, 0.9, 0.95)

#: The paper's fractions of feature units left out when a new head is trained (Figure 4).
PAPER_FRACTIONS: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.25, 0.5)

#: Layer names that every model has: its output logits, the input of its classifier, and one
#: layer per stage of its backbone (``blocks`` expands to module paths).
LOGITS, FEATURES, BLOCKS = "logits", "features", "blocks"
SPECIAL_LAYERS: tuple[str, ...] = (LOGITS, FEATURES, BLOCKS)

#: The layers an audit takes by default: the model's head (logits and the features feeding them).
DEFAULT_LAYERS: tuple[str, ...] = (LOGITS, FEATURES)

#: The variant name of the unmodified images; no scenario may take it.
CLEAN = "clean"

#: Where torchvision fetches Caltech-256 from (named in errors that say how to get it by hand).
CALTECH256_URL = "https://data.caltech.edu/records/nyy15-4j048/files/256_ObjectCategories.tar"
