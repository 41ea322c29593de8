"""What gets drawn on the images: character sets, fonts, text artifacts and named presets."""

from .charsets import CHARSETS
from .fonts import font_path, load_font
from .presets import PAPER_SCENARIOS, PRESETS, get_artifact
from .text import BBox, Drawn, TextArtifact

__all__ = [
    "BBox",
    "CHARSETS",
    "Drawn",
    "PAPER_SCENARIOS",
    "PRESETS",
    "TextArtifact",
    "font_path",
    "get_artifact",
    "load_font",
]
