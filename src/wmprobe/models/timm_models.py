"""Any timm model by name (the optional extra ``wmprobe[timm]``), with its own preprocessing.

timm is imported only when a timm model is asked for. Building never downloads: random init
(``pretrained=False``) builds offline, and pretrained weights are read from the Hugging Face cache
when they are there; they are downloaded only when the caller allows it. The input size, mean, std
and classifier come from the model's default ``pretrained_cfg`` (a tag in the name picks another,
e.g. ``vit_base_patch16_224.augreg_in21k_ft_in1k``); a ``timm:`` prefix picks timm where
torchvision has the same name (``timm:resnet50``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from pathlib import Path

from torch import nn

from wmprobe.errors import OptionalDependencyError, WeightsUnavailableError
from wmprobe.models.registry import PAPER20_TIMM, ModelSpec, register_lazy, register_provider

#: The paper's two timm models (ViT-B/16 and BEiT-B/16).
PAPER_TIMM = PAPER20_TIMM

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
_INSTALL = "pip install 'wmprobe[timm]'"


def has_timm() -> bool:
    """Whether the optional ``timm`` package is installed."""
    return importlib.util.find_spec("timm") is not None


def _timm():
    try:
        import timm
    except ImportError as exc:
        raise OptionalDependencyError(f"timm models need the timm package: `{_INSTALL}`.") from exc
    return timm


@functools.lru_cache(maxsize=256)
def _pretrained_cfg(name: str) -> dict:
    timm = _timm()
    from timm.models import get_pretrained_cfg

    arch, _, tag = name.partition(".")
    cfg = get_pretrained_cfg(name) or get_pretrained_cfg(arch)
    if cfg is None:
        # Architectures without a pretrained entry: build on the meta device to read the cfg.
        import torch

        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
        return dict(model.pretrained_cfg)
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg.__dict__)


def cached_weights(name: str) -> Path | None:
    """The pretrained weights file of a timm model in the Hugging Face cache, or None."""
    cfg = _pretrained_cfg(name)
    hub_id = cfg.get("hf_hub_id")
    if not hub_id:
        return None
    from huggingface_hub import try_to_load_from_cache

    files = (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else _WEIGHT_FILES
    for filename in files:
        path = try_to_load_from_cache(hub_id, filename)
        if isinstance(path, str) and Path(path).is_file():
            return Path(path)
    return None


def _weights_available(name: str) -> bool:
    if not has_timm():
        return False
    try:
        return cached_weights(name) is not None
    except Exception:  # noqa: BLE001 - a listing must not fail on one odd model
        return False


def _builder(name: str):
    def build(pretrained: bool, allow_download: bool) -> nn.Module:
        timm = _timm()
        if not pretrained:
            return timm.create_model(name, pretrained=False)
        path = cached_weights(name)
        if path is not None:
            overlay = {"file": str(path), "source": "timm"}
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay)
        hub_id = _pretrained_cfg(name).get("hf_hub_id") or "(no hub id)"
        if not allow_download:
            raise WeightsUnavailableError(
                f"Weights for {name} (Hugging Face {hub_id}) are not in the Hugging Face cache. "
                "Allow the download with `--download-weights` (needs network)."
            )
        try:
            return timm.create_model(name, pretrained=True)
        except OSError as exc:
            raise WeightsUnavailableError(
                f"Could not download the weights for {name} from {hub_id} ({exc})."
            ) from exc

    return build


def timm_spec(name: str) -> ModelSpec:
    """The spec of a timm model: input size, mean, std and classifier from its pretrained cfg."""
    cfg = _pretrained_cfg(name)
    size = cfg.get("input_size") or (3, 224, 224)
    classifier = cfg.get("classifier")
    return ModelSpec(
        name=name,
        build=_builder(name),
        input_size=int(size[-1]),
        mean=tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),
        source="timm",
        weights_available=lambda: _weights_available(name),
        weights_hint=f"wmprobe audit --model {name} --download-weights (needs network)",
        classifier=classifier if isinstance(classifier, str) else None,
    )


def _missing_timm_spec(name: str) -> ModelSpec:
    def build(pretrained: bool, allow_download: bool) -> nn.Module:
        _timm()
        raise AssertionError("unreachable")  # pragma: no cover

    return ModelSpec(
        name=name,
        build=build,
        source="timm",
        weights_available=lambda: False,
        weights_hint=_INSTALL,
    )


def _lazy(name: str):
    return lambda: timm_spec(name) if has_timm() else _missing_timm_spec(name)


def _provider(name: str) -> ModelSpec | None:
    explicit = name.startswith("timm:")
    if explicit:
        name = name.removeprefix("timm:")
    if not has_timm():
        if explicit:
            raise OptionalDependencyError(f"timm models need the timm package: `{_INSTALL}`.")
        return None
    timm = _timm()
    if not timm.is_model(name):
        return None
    spec = timm_spec(name)
    if explicit:
        return dataclasses.replace(spec, name=f"timm:{name}")
    return spec


for _name in PAPER_TIMM:
    register_lazy(_name, _lazy(_name))
register_provider(_provider, priority=20)
