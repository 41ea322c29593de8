"""A model ready for extraction: the module, its preprocessing, class names and feature layer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models._meta import _IMAGENET_CATEGORIES

from .registry import ModelSpec, get_model_spec


@dataclass
class LoadedModel:
    """A built model in eval mode on its device, with what extraction needs to know about it."""

    spec: ModelSpec
    module: nn.Module
    classifier: nn.Linear | None
    class_names: tuple[str, ...]
    device: torch.device
    pretrained: bool

    @property
    def name(self) -> str:
        return self.spec.name

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames ``[B, 3, 224, 224]`` -> normalised float input ``[B, 3, S, S]``.

        The whole frame is resized to the model's input size (never cropped), then normalised.
        """
        x = frames.to(self.device, non_blocking=True).float().div_(255.0)
        size = self.spec.input_size
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        mean = torch.tensor(self.spec.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std, device=self.device).view(1, 3, 1, 1)
        return (x - mean) / std


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else CPU; asking for CUDA without a GPU is an error."""
    from ..errors import WmprobeError

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise WmprobeError(
            f"Device {device!r} was asked for, but no CUDA GPU is available here; "
            "use --device cpu or --device auto."
        )
    return dev


def find_classifier(module: nn.Module) -> nn.Linear | None:
    """The final linear layer (the last ``nn.Linear`` registered); its input is the features."""
    last = None
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            last = sub
    return last


def load_model(
    name: str,
    *,
    pretrained: bool = True,
    device: str = "auto",
    allow_download: bool = False,
) -> LoadedModel:
    """Build a registered model, in eval mode on ``device``.

    Example:
        >>> m = load_model("efficientnet_lite0", device="cpu")
        >>> m.spec.input_size, len(m.class_names)
        (224, 1000)
    """
    spec = get_model_spec(name)
    dev = resolve_device(device)
    module = spec.build(pretrained, allow_download).eval().to(dev)
    classifier = find_classifier(module)
    n_out = classifier.out_features if classifier is not None else 1000
    names = (
        tuple(_IMAGENET_CATEGORIES) if n_out == 1000 else tuple(f"class_{i}" for i in range(n_out))
    )
    return LoadedModel(
        spec=spec,
        module=module,
        classifier=classifier,
        class_names=names,
        device=dev,
        pretrained=pretrained,
    )
