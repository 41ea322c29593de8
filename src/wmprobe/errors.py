"""Every exception that wmprobe raises on purpose; the CLI prints each as a one-line message.

Bad arguments (a value outside what a parameter takes, an unknown name, a spec that cannot be
used) raise :class:`InvalidArgumentError` or one of its subclasses, which are ``ValueError`` s too.
Everything else here is a resource or state that cannot be used (a folder, a download, weights).

Example:
    >>> from wmprobe.errors import InvalidArgumentError, UnknownModelError, WmprobeError
    >>> issubclass(UnknownModelError, InvalidArgumentError)
    True
    >>> issubclass(InvalidArgumentError, WmprobeError), issubclass(InvalidArgumentError, ValueError)
    (True, True)
"""

from __future__ import annotations

__all__ = [
    "ArtifactDoesNotFitError",
    "BadImageError",
    "BrowserUnavailableError",
    "CacheError",
    "CheckpointError",
    "DatasetDownloadError",
    "FontUnavailableError",
    "GateError",
    "GateSyntaxError",
    "ImageFolderError",
    "InvalidArgumentError",
    "LayerError",
    "MitigationError",
    "OptionalDependencyError",
    "ProbeFolderError",
    "RunFolderError",
    "ScenarioSpecError",
    "UnknownModelError",
    "UnknownScenarioError",
    "UnsafeArchiveError",
    "WeightsMismatchError",
    "WeightsUnavailableError",
    "WmprobeError",
]


class WmprobeError(Exception):
    """Base class of every error wmprobe raises on purpose (bad input, missing resource)."""


class _PlainKeyError(KeyError):
    """A KeyError whose message is not quoted (``str(KeyError('x'))`` is ``"'x'"``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# -- bad arguments ---------------------------------------------------------------------------


class InvalidArgumentError(WmprobeError, ValueError):
    """An argument outside the values it can take (the message says which are allowed)."""


class UnknownModelError(InvalidArgumentError, _PlainKeyError):
    """A model name that the registry does not know."""


class UnknownScenarioError(InvalidArgumentError, _PlainKeyError):
    """A scenario (artifact preset) name that wmprobe does not know."""


class LayerError(InvalidArgumentError):
    """A layer name that a model does not have."""


class ScenarioSpecError(InvalidArgumentError):
    """A scenario specification (Python arguments or a TOML spec file) that cannot be used."""


class GateError(InvalidArgumentError):
    """A ``--fail-if`` gate that cannot be used (bad syntax, or it matches nothing in the table)."""


class GateSyntaxError(GateError):
    """A ``--fail-if`` expression that does not follow the gate grammar."""


class MitigationError(InvalidArgumentError):
    """A mitigation request that cannot be carried out (bad fractions, unknown ranking, labels or
    shapes that do not fit, a folder that is not a saved mitigated model, ...)."""


# -- inputs and resources that cannot be used -------------------------------------------------


class WeightsUnavailableError(WmprobeError):
    """A model's weights cannot be had here (not cached and no network)."""


class CheckpointError(WmprobeError):
    """A model checkpoint file that cannot be read safely or does not fit its architecture."""


class WeightsMismatchError(WeightsUnavailableError):
    """A weights file that is not the one expected (damaged, truncated or another file)."""


class FontUnavailableError(WmprobeError):
    """The font needed for a script is not installed."""


class ImageFolderError(WmprobeError):
    """An image folder that cannot be used at all (missing, empty, no readable image)."""


class BadImageError(WmprobeError):
    """One image that cannot be used (an audit counts it as a skip and goes on)."""


class ImageChangedError(WmprobeError):
    """An image's bytes are not those hashed for the cache key (it changed during the run, or a
    worker sees another file at its path): the run stops."""


class ArtifactDoesNotFitError(WmprobeError):
    """An artifact is larger than the image it should be drawn on."""


class ProbeFolderError(WmprobeError):
    """A folder of ready-made probe images that cannot be paired with the clean images."""


class RunFolderError(WmprobeError):
    """A run folder that holds no complete audit (no units.parquet and run.json)."""


class CacheError(WmprobeError):
    """An activation cache that cannot be used (unwritable, locked, or holding other data)."""


class OptionalDependencyError(WmprobeError, ImportError):
    """A feature needs an optional package that is not installed; the message says how to get it."""


class BrowserUnavailableError(WmprobeError):
    """Headless Chromium, needed to check or screenshot a report, is not installed."""


class DatasetDownloadError(WmprobeError):
    """A data set that was asked for could not be downloaded (no network, server refused,
    checksum mismatch)."""


class UnsafeArchiveError(DatasetDownloadError):
    """A downloaded archive with a member that would land outside its folder, or a link."""
