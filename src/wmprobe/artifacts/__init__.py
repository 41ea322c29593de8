"""What gets drawn on the images: text, image overlays, placebos, ImageNet-W's mark and presets."""

from .base import RGB, Artifact, BBox, Drawn, NullArtifact, parse_color
from .charsets import CHARSETS
from .fonts import font_path, load_font
from .imagenet_w import ImageNetWArtifact
from .layout import NAMED_POSITIONS, Position, parse_position
from .overlay import ImageOverlay
from .placebo import PLACEBO_FILLS, PlaceboArtifact
from .presets import PAPER_SCENARIOS, PRESETS, get_artifact
from .text import TextArtifact

__all__ = [
    "CHARSETS",
    "NAMED_POSITIONS",
    "PAPER_SCENARIOS",
    "PLACEBO_FILLS",
    "PRESETS",
    "RGB",
    "Artifact",
    "BBox",
    "Drawn",
    "ImageNetWArtifact",
    "ImageOverlay",
    "NullArtifact",
    "PlaceboArtifact",
    "Position",
    "TextArtifact",
    "font_path",
    "get_artifact",
    "load_font",
    "parse_color",
    "parse_position",
]
