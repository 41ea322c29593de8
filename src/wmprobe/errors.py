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


class WeightsMismatchError(WeightsUnavailableError):
    """A weights file that is not the one expected (damaged, truncated or another file)."""


class UnknownScenarioError(WmprobeError, KeyError):
    """A scenario (artifact preset) name that wmprobe does not know."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class FontUnavailableError(WmprobeError):
    """The font needed for a script is not installed."""


class ImageFolderError(WmprobeError):
    """An image folder that cannot be used at all (missing, empty, no readable image)."""


class BadImageError(WmprobeError):
    """One image that cannot be used (an audit counts it as a skip and goes on)."""


class ArtifactDoesNotFitError(WmprobeError):
    """An artifact is larger than the image it should be drawn on."""


class LayerError(WmprobeError):
    """A layer name that a model does not have."""


class GateError(WmprobeError):
    """A ``--fail-if`` gate that cannot be used (bad syntax, or it matches nothing in the table)."""


class GateSyntaxError(GateError, ValueError):
    """A ``--fail-if`` expression that does not follow the gate grammar."""


class ScenarioSpecError(WmprobeError, ValueError):
    """A scenario specification (Python arguments or a TOML spec file) that cannot be used."""


class OptionalDependencyError(WmprobeError, ImportError):
    """A feature needs an optional package that is not installed; the message says how to get it."""


class ProbeFolderError(WmprobeError):
    """A folder of ready-made probe images that cannot be paired with the clean images."""


class InvalidArgumentError(WmprobeError, ValueError):
    """An argument outside the values it can take (the message says which are allowed)."""


class RunFolderError(WmprobeError):
    """A run folder that holds no complete audit (no units.parquet and run.json)."""


class BrowserUnavailableError(WmprobeError):
    """Headless Chromium, needed to check or screenshot a report, is not installed."""


class DatasetDownloadError(WmprobeError):
    """A data set that was asked for could not be downloaded (no network, server refused)."""


class MitigationError(WmprobeError):
    """A mitigation request that cannot be carried out (bad fractions, too few images, ...)."""


class MissingDependencyError(WmprobeError):
    """An optional package that a feature needs is not installed (the message says which)."""


class CacheError(WmprobeError):
    """An activation cache that cannot be used (unwritable, locked, or holding other data)."""


class CheckpointError(WmprobeError):
    """A model checkpoint file that cannot be read safely or does not fit its architecture."""
