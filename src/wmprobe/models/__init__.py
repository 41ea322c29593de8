"""Models by name: the registry, loading, preprocessing, the feature layer and any other layer.

Example:
    >>> from wmprobe.models import list_models
    >>> list_models("efficientnet_lite*")
    ['efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2']
"""

from wmprobe.models.layers import (
    REDUCTIONS,
    Layer,
    LayerInfo,
    LayerTaps,
    block_layers,
    describe_layers,
    resolve_layers,
)
from wmprobe.models.loaded import (
    LoadedModel,
    find_classifier,
    load_model,
    resolve_device,
    state_dict_hash,
)
from wmprobe.models.registry import (
    MODEL_PRESETS,
    PAPER20,
    ModelSpec,
    expand_models,
    get_model_spec,
    list_models,
    register_model,
)

__all__ = [
    "MODEL_PRESETS",
    "PAPER20",
    "REDUCTIONS",
    "Layer",
    "LayerInfo",
    "LayerTaps",
    "LoadedModel",
    "ModelSpec",
    "block_layers",
    "describe_layers",
    "expand_models",
    "find_classifier",
    "get_model_spec",
    "list_models",
    "load_model",
    "register_model",
    "resolve_device",
    "resolve_layers",
    "state_dict_hash",
]
