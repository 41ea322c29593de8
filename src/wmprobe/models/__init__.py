"""Models by name: the registry, loading, preprocessing and the feature layer."""

from .loaded import LoadedModel, find_classifier, load_model, resolve_device
from .registry import ModelSpec, get_model_spec, list_models, register_model

__all__ = [
    "LoadedModel",
    "ModelSpec",
    "find_classifier",
    "get_model_spec",
    "list_models",
    "load_model",
    "register_model",
    "resolve_device",
]
