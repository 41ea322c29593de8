"""Every torchvision classification model by name, with its weights' own normalisation and size.

The paper used the original ``pretrained=True`` weights, so ``IMAGENET1K_V1`` is taken where it
exists, else the model's default weights. Weights are read from torch's hub cache; they are
downloaded only when the caller allows it. A file already there is checked against the sha256
prefix its name carries before it is used (see :mod:`wmprobe.models.weights_files`).
"""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import get_model, get_model_weights

from wmprobe.errors import WeightsMismatchError, WeightsUnavailableError
from wmprobe.models.registry import (
    PAPER20,
    PAPER20_TIMM,
    ModelSpec,
    register_model,
    register_provider,
)
from wmprobe.models.weights_files import (
    hash_in_name,
    verify_weights_file,
    weights_file_matches,
)

#: The torchvision models of the paper (ViT-B/16 and BEiT-B/16 come from timm there).
PAPER_TORCHVISION = tuple(n for n in PAPER20 if n not in PAPER20_TIMM)


@functools.lru_cache(maxsize=1)
def classification_models() -> tuple[str, ...]:
    """Names of torchvision's ImageNet classification models."""
    return tuple(torchvision.models.list_models(module=torchvision.models))


def weights_enum(name: str):
    """The weights torchvision would load for ``name`` (IMAGENET1K_V1 where it exists)."""
    weights = get_model_weights(name)
    return getattr(weights, "IMAGENET1K_V1", None) or weights.DEFAULT


def weights_path(name: str) -> Path:
    """Where torch's hub cache keeps the weights file of ``name``."""
    url = weights_enum(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def weights_ready(name: str) -> bool:
    """Whether the weights file of ``name`` is in the cache and is the file its name promises."""
    path = weights_path(name)
    prefix = hash_in_name(path)
    return path.is_file() and (prefix is None or weights_file_matches(path, prefix))


def _fix(name: str) -> str:
    return (
        f"Delete it and run with `--download-weights`, or put the file "
        f"{weights_enum(name).url} there."
    )


def _builder(name: str):
    def build(pretrained: bool, allow_download: bool) -> nn.Module:
        kwargs = {}
        if name in ("googlenet", "inception_v3"):
            kwargs = {"aux_logits": False, "init_weights": False}
        if not pretrained:
            return get_model(name, weights=None, **kwargs)
        weights = weights_enum(name)
        path = weights_path(name)
        if path.is_file():
            prefix = hash_in_name(path)
            if prefix is not None:  # torch.hub checks the name's hash only when it downloads
                verify_weights_file(path, prefix, what=f"Weights for {name}", fix=_fix(name))
        elif not allow_download:
            raise WeightsUnavailableError(
                f"Weights for {name} ({weights}) are not in the cache at {path}. Allow the "
                f"download with `--download-weights`, or put the file {weights.url} there."
            )
        try:
            model = get_model(name, weights=None, **kwargs)
            state = torch.hub.load_state_dict_from_url(
                weights.url, progress=True, check_hash=True, weights_only=True
            )
        except OSError as exc:  # URLError, connection refused, no network
            raise WeightsUnavailableError(
                f"Could not download the weights for {name} from {weights.url} ({exc}). "
                f"Without network, put that file at {path}."
            ) from exc
        except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:  # a damaged file
            raise WeightsMismatchError(
                f"Weights for {name}: the file {path} cannot be read ({exc}). {_fix(name)}"
            ) from exc
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise WeightsMismatchError(
                f"Weights for {name}: the file {path} does not fit the model ({exc}). {_fix(name)}"
            ) from exc
        return model

    return build


def torchvision_spec(name: str) -> ModelSpec | None:
    """The spec of a torchvision classification model, or None when torchvision has no such name."""
    if name not in classification_models():
        return None
    transforms = weights_enum(name).transforms()
    return ModelSpec(
        name=name,
        build=_builder(name),
        input_size=int(transforms.crop_size[0]),
        mean=tuple(transforms.mean),
        std=tuple(transforms.std),
        source="torchvision",
        weights_available=lambda: weights_ready(name),
        weights_hint=f"wmprobe audit --model {name} --download-weights (needs network)",
    )


for _name in PAPER_TORCHVISION:
    register_model(torchvision_spec(_name))
register_provider(torchvision_spec, priority=10)
