"""The few named exceptions that wmprobe raises; the CLI turns each into a clean message."""

from __future__ import annotations


class WmprobeError(Exception):
    """Base class of every error wmprobe raises on purpose (bad input, missing resource)."""


class UnknownModelError(WmprobeError, KeyError):
    """A model name that the registry does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsUnavailableError(WmprobeError):
    """A model's weights cannot be had here (not cached and no network)."""


class UnknownScenarioError(WmprobeError, KeyError):
    """A scenario (artifact preset) name that wmprobe does not know."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class FontUnavailableError(WmprobeError):
    """The font needed for a script is not installed."""


class ImageFolderError(WmprobeError):
    """An image folder that cannot be used at all (missing, empty, no readable image)."""


class ArtifactDoesNotFitError(WmprobeError):
    """An artifact is larger than the image it should be drawn on."""


class LayerError(WmprobeError):
    """A layer name that a model does not have."""


class MissingDependencyError(WmprobeError):
    """An optional package that a feature needs is not installed (the message says which)."""


class CacheError(WmprobeError):
    """An activation cache that cannot be used (unwritable, locked, or holding other data)."""


class CheckpointError(WmprobeError):
    """A model checkpoint file that cannot be read safely or does not fit its architecture."""
