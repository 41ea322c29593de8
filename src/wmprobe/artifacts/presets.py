"""The named artifacts (scenarios) of the paper."""

from __future__ import annotations

from ..errors import UnknownScenarioError
from .charsets import CHARSETS
from .text import TextArtifact

PRESETS: dict[str, TextArtifact] = {
    "chinese": TextArtifact(
        CHARSETS["chinese"], font="cjk", description="7 frequent Chinese chars"
    ),
    "latin": TextArtifact(CHARSETS["latin"], font="serif", description="7 frequent Latin letters"),
    "hindi": TextArtifact(
        CHARSETS["hindi"], font="devanagari", description="7 frequent Devanagari symbols, shaped"
    ),
    "numerals": TextArtifact(CHARSETS["numerals"], font="serif", description="7 digits 0-9"),
}

#: The paper's four scenarios, in its order.
PAPER_SCENARIOS = ("chinese", "latin", "hindi", "numerals")


def get_artifact(name: str) -> TextArtifact:
    """The artifact of a named scenario; see ``wmprobe scenarios`` for the names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownScenarioError(
            f"Unknown scenario {name!r}; known: {', '.join(PRESETS)} (see `wmprobe scenarios`)."
        ) from None
