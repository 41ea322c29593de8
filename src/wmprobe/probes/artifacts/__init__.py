"""What gets drawn on the images: text, image overlays, placebos, ImageNet-W's mark and presets."""

from wmprobe.probes.artifacts.base import RGB, Artifact, BBox, Drawn, NullArtifact, parse_color
from wmprobe.probes.artifacts.charsets import CHARSETS
from wmprobe.probes.artifacts.fonts import font_path, load_font
from wmprobe.probes.artifacts.imagenet_w import ImageNetWArtifact
from wmprobe.probes.artifacts.layout import NAMED_POSITIONS, Position, parse_position
from wmprobe.probes.artifacts.overlay import ImageOverlay
from wmprobe.probes.artifacts.placebo import PLACEBO_FILLS, PlaceboArtifact
from wmprobe.probes.artifacts.presets import PAPER_SCENARIOS, PRESETS, get_artifact
from wmprobe.probes.artifacts.text import TextArtifact

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
