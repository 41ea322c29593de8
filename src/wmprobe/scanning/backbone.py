"""The part of a backbone a detector reads: one layer's output, the forward stopped right after it.

A detector names a model, an input size and a layer (a module path whose output it reads, or
``features``: the input of the model's classifier). :class:`FeatureTap` runs the model on square
uint8 frames, normalised the model's way, and returns that layer's activation; the rest of the
network is not run (the hook stops the forward), so a detector on an early block pays only for
the blocks up to it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from wmprobe.errors import LayerError
from wmprobe.models.loaded import LoadedModel, load_model

FEATURES = "features"


class _Stop(Exception):  # noqa: N818 - control flow, never escapes FeatureTap
    pass


class FeatureTap:
    """``tap(frames)`` -> the activation of ``layer`` for uint8 frames ``[B, S, S, 3]``.

    Example:
        >>> tap = FeatureTap("efficientnet_lite0", "_blocks.10", device="cpu")  # doctest: +SKIP
        >>> tap(np.zeros((1, 320, 320, 3), np.uint8)).shape  # doctest: +SKIP
        torch.Size([1, 112, 20, 20])
    """

    def __init__(
        self, model: str | LoadedModel, layer: str, *, device: str = "auto", pretrained: bool = True
    ):
        self.model = (
            model
            if isinstance(model, LoadedModel)
            else load_model(model, device=device, pretrained=pretrained)
        )
        self.layer = layer
        module = self.model.module
        if layer == FEATURES:
            if self.model.classifier is None:
                raise LayerError(f"{self.model.name} has no classifier, so no `features` layer.")
            target: nn.Module = self.model.classifier
        else:
            try:
                target = module.get_submodule(layer)
            except AttributeError:
                raise LayerError(
                    f"{self.model.name} has no layer {layer!r}; see `wmprobe layers --model "
                    f"{self.model.name}` for the names."
                ) from None
        self._target = target
        mean = torch.tensor(self.model.spec.mean).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.model.spec.std).view(1, 3, 1, 1) * 255.0
        self._shift, self._scale = mean.to(self.model.device), (1.0 / std).to(self.model.device)

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(frames).to(self.model.device)
        x = x.permute(0, 3, 1, 2).float().sub_(self._shift).mul_(self._scale)
        x = x.contiguous(memory_format=torch.channels_last)
        out: list[torch.Tensor] = []

        def grab_input(_m, args):
            out.append(args[0])
            raise _Stop

        def grab_output(_m, _args, result):
            out.append(result)
            raise _Stop

        if self.layer == FEATURES:
            handle = self._target.register_forward_pre_hook(grab_input)
        else:
            handle = self._target.register_forward_hook(grab_output)
        try:
            self.model.module(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not out:
            raise LayerError(f"The layer {self.layer!r} of {self.model.name} was never run.")
        y = out[0]
        if self.layer == FEATURES and y.ndim > 2:
            y = y.flatten(1)
        return y.float()
