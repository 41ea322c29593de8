"""The named artifacts: the paper's four scripts, ImageNet-W's watermark and the null (nothing)."""

from __future__ import annotations

from wmprobe._util import did_you_mean
from wmprobe.errors import UnknownScenarioError
from wmprobe.probes.artifacts.base import Artifact, NullArtifact
from wmprobe.probes.artifacts.charsets import CHARSETS
from wmprobe.probes.artifacts.imagenet_w import ImageNetWArtifact
from wmprobe.probes.artifacts.marks import MARK_FAMILIES, MarkArtifact
from wmprobe.probes.artifacts.scene import SCENE_KINDS, SceneArtifact
from wmprobe.probes.artifacts.text import TextArtifact

#: The paper's four scenarios, in its order.
PAPER_SCENARIOS = ("chinese", "latin", "hindi", "numerals")

PRESETS: dict[str, Artifact] = {
    "chinese": TextArtifact(
        CHARSETS["chinese"], font="cjk", description="7 frequent Chinese chars"
    ),
    "latin": TextArtifact(CHARSETS["latin"], font="serif", description="7 frequent Latin letters"),
    "hindi": TextArtifact(
        CHARSETS["hindi"], font="devanagari", description="7 frequent Devanagari symbols, shaped"
    ),
    "numerals": TextArtifact(CHARSETS["numerals"], font="serif", description="7 digits 0-9"),
    "imagenet_w": ImageNetWArtifact(
        description="ImageNet-W's watermark '捷径捷径捷径' at opacity 0.5, drawn by the "
        "imagenet-w package (optional extra)"
    ),
    "null": NullArtifact(),
    **{name: MarkArtifact(name) for name in MARK_FAMILIES},  # the scan's mark families
    **{name: SceneArtifact(name) for name in SCENE_KINDS},  # its hard negatives (no overlay)
}
"""Every named artifact. The paper's four: 7 symbols, 30 px, white, opaque, fully visible."""


def get_artifact(name: str) -> Artifact:
    """The artifact of a named preset; see ``wmprobe scenarios`` for the names.

    Example:
        >>> type(get_artifact("chinese")).__name__
        'TextArtifact'
        >>> get_artifact("chinees")
        Traceback (most recent call last):
        wmprobe.errors.UnknownScenarioError: Unknown scenario 'chinees'. Did you mean chinese? ...
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownScenarioError(unknown_message(name, list(PRESETS))) from None


def unknown_message(name: str, known: list[str]) -> str:
    """The error text for an unknown scenario name: close matches, the presets, and the command."""
    return (
        f"Unknown scenario {name!r}.{did_you_mean(name, known)} Presets: {', '.join(PRESETS)}; "
        f"each text preset also as NAME+placebo_box, +placebo_noise, +placebo_blur; any as "
        "NAME+jpeg_probe; a spec file FILE.toml; a probe folder folder:PATH "
        "(see `wmprobe scenarios`)."
    )
