"""The mitigated model as a torch module: frozen backbone + masked head, saved and rebuilt.

A saved model is a folder with ``config.json`` (what to build) and ``model.pt`` (a state dict,
loadable with ``torch.load(..., weights_only=True)``). :func:`load_mitigated` rebuilds it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wmprobe._util import atomic_write
from wmprobe._version import __version__
from wmprobe.errors import MitigationError
from wmprobe.mitigation.heads import LinearHead
from wmprobe.models import LoadedModel, find_classifier, get_model_spec

FORMAT = "wmprobe-mitigated/1"


class MaskedHead(nn.Module):
    """A linear head that reads only the ``kept`` feature units (standardised), never the others."""

    def __init__(self, n_features: int, kept: torch.Tensor, n_classes: int):
        super().__init__()
        self.n_features = n_features
        self.register_buffer("kept", kept.to(torch.long))
        self.register_buffer("mean", torch.zeros(len(kept)))
        self.register_buffer("scale", torch.ones(len(kept)))
        self.linear = nn.Linear(len(kept), n_classes)

    @property
    def mask(self) -> torch.Tensor:
        """Boolean ``[n_features]``: True for the units the head reads."""
        m = torch.zeros(self.n_features, dtype=torch.bool, device=self.kept.device)
        m[self.kept] = True
        return m

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Features ``[B, n_features]`` -> logits ``[B, n_classes]``."""
        x = features.index_select(1, self.kept)
        return self.linear((x - self.mean) / self.scale)

    @classmethod
    def from_head(cls, head: LinearHead) -> MaskedHead:
        """The torch module of a fitted :class:`LinearHead` (float32)."""
        module = cls(head.n_features, torch.from_numpy(head.kept), head.n_classes)
        with torch.no_grad():
            module.mean.copy_(torch.from_numpy(head.mean))
            module.scale.copy_(torch.from_numpy(head.scale))
            module.linear.weight.copy_(torch.from_numpy(head.weight))
            module.linear.bias.copy_(torch.from_numpy(head.bias))
        return module


def strip_classifier(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose final linear layer is ``nn.Identity``: it outputs the features."""
    backbone = copy.deepcopy(module)
    classifier = find_classifier(backbone)
    if classifier is None:
        raise MitigationError("The model has no final linear layer, so no features to reuse.")
    for sub in backbone.modules():
        for child_name, child in sub.named_children():
            if child is classifier:
                setattr(sub, child_name, nn.Identity())
                return backbone
    raise MitigationError("The model's final linear layer is not a child of any of its modules.")


class MitigatedModel(nn.Module):
    """Frozen backbone + masked head, with the model's own preprocessing.

    Input: frames ``[B, 3, H, W]``, uint8 (0..255) or float (0..1), e.g. ``wmprobe.load_frame``'s
    224x224 frame; they are resized to the model's input size and normalised as the audit does.
    Output: logits ``[B, n_classes]`` over the downstream classes.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: MaskedHead,
        *,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
    ):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.input_size = int(input_size)
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames -> normalised model input (the audit's ``LoadedModel.preprocess``)."""
        x = frames.float()
        if frames.dtype == torch.uint8:
            x = x / 255.0
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True
            )
        return (x - self.pixel_mean) / self.pixel_std

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """Backbone features ``[B, n_features]`` of frames."""
        x = self.backbone(self.preprocess(frames))
        if x.ndim == 4:
            x = x.mean(dim=(2, 3))
        return x.flatten(1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(frames))


def build_mitigated(model: LoadedModel, head: LinearHead) -> MitigatedModel:
    """The mitigated model of a loaded backbone and a fitted head, in eval mode."""
    spec = model.spec
    return MitigatedModel(
        strip_classifier(model.module).cpu(),
        MaskedHead.from_head(head),
        input_size=spec.input_size,
        mean=spec.mean,
        std=spec.std,
    ).eval()


def export_mitigated(
    model: LoadedModel,
    head: LinearHead,
    out_dir: str | Path,
    *,
    classes: Sequence[str],
    extra: dict | None = None,
) -> Path:
    """Save the mitigated model to ``out_dir`` (``config.json`` + ``model.pt``); returns the folder.

    ``extra`` goes into the config as is (how the head was chosen, its measured accuracy, ...).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = build_mitigated(model, head)
    config = {
        "format": FORMAT,
        "model": model.name,
        "pretrained": model.pretrained,
        "input_size": model.spec.input_size,
        "mean": list(model.spec.mean),
        "std": list(model.spec.std),
        "n_features": head.n_features,
        "n_kept": len(head.kept),
        "n_classes": head.n_classes,
        "classes": list(classes),
        "C": head.C,
        "wmprobe_version": __version__,
        **(extra or {}),
    }
    if len(config["classes"]) != head.n_classes:
        raise MitigationError(
            f"Expected {head.n_classes} class names but got {len(config['classes'])}"
        )
    torch.save(module.state_dict(), out / "model.pt")
    atomic_write(out / "config.json", json.dumps(config, indent=2, ensure_ascii=False))
    return out


def load_mitigated(path: str | Path, *, device: str = "cpu") -> MitigatedModel:
    """Rebuild a saved mitigated model (``path``: its folder or its ``config.json``), in eval mode.

    The backbone's architecture comes from the model registry; every weight comes from
    ``model.pt``, read with ``torch.load(..., weights_only=True)``.

    Example:
        >>> model = load_mitigated("RUN/mitigated")  # doctest: +SKIP
        >>> logits = model(frames)  # frames: [B, 3, 224, 224] uint8  # doctest: +SKIP
    """
    folder = Path(path)
    folder = folder.parent if folder.name == "config.json" else folder
    config_path, weights_path = folder / "config.json", folder / "model.pt"
    if not config_path.is_file() or not weights_path.is_file():
        raise MitigationError(
            f"{str(folder)!r} is not a saved mitigated model (needs config.json and model.pt)."
        )
    config = json.loads(config_path.read_text())
    if config.get("format") != FORMAT:
        raise MitigationError(
            f"{config_path} has format {config.get('format')!r}; expected {FORMAT!r}."
        )
    spec = get_model_spec(config["model"])
    backbone = strip_classifier(spec.build(False, False))
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    head = MaskedHead(config["n_features"], state["head.kept"], config["n_classes"])
    module = MitigatedModel(
        backbone, head, input_size=config["input_size"], mean=config["mean"], std=config["std"]
    )
    module.load_state_dict(state, strict=True)
    module.config = config
    return module.eval().to(device)


def kept_mask(module: MitigatedModel) -> np.ndarray:
    """Boolean ``[n_features]`` of a mitigated model: True for the units its head reads."""
    return module.head.mask.cpu().numpy()
