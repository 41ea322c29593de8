"""Attribution maps of one unit on a batch of 224x224 frames, by four methods.

The unit is a value the audit measured: a logit, a feature (the input of the final linear layer)
or a channel of a block layer reduced over space as the audit reduced it (mean or max). Each
method explains exactly that value through :class:`~wmprobe.models.layers.LayerTaps`, so "the
averaged channel is the neuron" for conv units and the output for logits. ``sign`` -1 explains
the negated value, for units that the mark lowers (AUC < 0.5): positive relevance is then always
evidence for the watermark's direction.

- ``gradcam``: captum ``LayerGradCam`` at the unit's spatial layer (for logits and features the
  last spatial map of the network, see :func:`spatial_layer`), ReLU'd, bilinearly upsampled;
- ``ig``: captum ``IntegratedGradients`` from the all-zero normalised input (the mean colour),
  summed over colour channels;
- ``lrp``: zennit's ``EpsilonPlusFlat`` composite with the model's canonizers
  (:mod:`~wmprobe.attribution.canonizers`), summed over colour channels;
- ``activation``: no gradient: the unit's own channel of its spatial layer (conv units only; a
  logit has no map of its own), the NetDissect measure.

All maps are returned at the 224x224 frame the mark was drawn on (resized bilinearly from the
model's input size when it differs), as float32 ``[B, 224, 224]``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wmprobe.errors import InvalidArgumentError, LayerError, OptionalDependencyError
from wmprobe.models import LayerTaps, LoadedModel, resolve_layers
from wmprobe.models.layers import FEATURES, LOGITS, channels_last, trace_forward
from wmprobe.probes.images import FRAME_SIZE

METHODS = ("gradcam", "ig", "lrp", "activation")
GRADIENT_METHODS = ("gradcam", "ig", "lrp")


def require(package: str) -> None:
    """Import ``package`` (captum, zennit) or raise a named error that says how to install it."""
    try:
        __import__(package)
    except ImportError as exc:
        raise OptionalDependencyError(
            f"`wmprobe explain` needs the {package} package for this method: "
            "`pip install 'wmprobe[explain]'`."
        ) from exc


def check_methods(methods: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The methods named (comma-separated or a list), in the order given, checked."""
    items = methods.split(",") if isinstance(methods, str) else list(methods)
    items = [m.strip().lower() for m in items if m.strip()]
    bad = [m for m in items if m not in METHODS]
    if not items or bad:
        raise InvalidArgumentError(
            f"Expected argument `method` to be one or more of {', '.join(METHODS)} "
            f"(comma-separated) but got {methods!r}"
        )
    return tuple(dict.fromkeys(items))


def spatial_layer(model: LoadedModel, layer: str) -> str | None:
    """The module path whose ``[B, C, H, W]`` output (H, W > 1) holds the unit's map, or None.

    A block layer is its own spatial layer. For ``logits`` and ``features`` it is the last module
    of the forward pass with a spatial output that runs once (a module reused inside a block,
    like EfficientNet's activation, is passed over): ``layer4`` of a ResNet, ``_bn1`` (the head's
    batch norm, before its ReLU6) of EfficientNet-Lite. None for token models.
    """
    wanted = None if layer in (LOGITS, FEATURES) else layer
    paths = [p for p, _ in model.module.named_modules() if p and (wanted is None or p == wanted)]
    fired = trace_forward(model, paths)
    calls = collections.Counter(path for path, _, _ in fired)
    for path, _, shape in reversed(fired):
        if shape is None or calls[path] != 1:
            continue
        if len(shape) == 3 and not channels_last(shape) and min(shape[1:]) > 1:
            return path
    return None


def _to_frame(maps: torch.Tensor) -> np.ndarray:
    """``[B, h, w]`` -> float32 ``[B, 224, 224]`` (bilinear when the size differs)."""
    if maps.shape[-2:] != (FRAME_SIZE, FRAME_SIZE):
        maps = F.interpolate(maps[:, None], size=(FRAME_SIZE, FRAME_SIZE), mode="bilinear")[:, 0]
    return maps.detach().float().cpu().numpy()


class _UnitOutput(nn.Module):
    """The audited values of one layer as a module's output, ``[B, units]`` (sign applied)."""

    def __init__(self, model: LoadedModel, taps: LayerTaps, layer: str, sign: float):
        super().__init__()
        self.net = model.module
        self._taps, self._layer, self._sign = taps, layer, sign

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._sign * self._taps.run(x)[self._layer]


class UnitAttributor:
    """Attribution maps for the units of one audited layer of ``model``.

    Example:
        >>> att = UnitAttributor(model, "features", reduction="mean")  # doctest: +SKIP
        >>> att.maps(frames, unit=7, method="gradcam").shape  # doctest: +SKIP
        (16, 224, 224)
    """

    def __init__(
        self, model: LoadedModel, layer: str, *, reduction: str = "mean", ig_steps: int = 16
    ):
        if ig_steps < 2:
            raise InvalidArgumentError(
                f"Expected argument `ig_steps` to be >= 2 but got {ig_steps}"
            )
        self.model = model
        self.layer = resolve_layers(model, [layer])[0]
        self.reduction = reduction
        self.ig_steps = ig_steps
        self.spatial = spatial_layer(model, layer)
        self._canonizers: tuple[list, str] | None = None

    def supports(self, method: str) -> bool:
        """Whether ``method`` is defined for this layer's units (``activation``: not for logits)."""
        if method in ("gradcam", "activation") and self.spatial is None:
            return False
        return not (method == "activation" and self.layer.name == LOGITS)

    @property
    def canonizers(self) -> str:
        """The canonizers LRP uses for this model, in words."""
        return self._lrp_canonizers()[1]

    def _lrp_canonizers(self) -> tuple[list, str]:
        if self._canonizers is None:
            from wmprobe.attribution.canonizers import canonizers_for

            self._canonizers = canonizers_for(self.model, prefix="net.")
        return self._canonizers

    @contextmanager
    def _unit_output(self, sign: float) -> Iterator[_UnitOutput]:
        with LayerTaps(self.model, [self.layer], self.reduction) as taps:
            yield _UnitOutput(self.model, taps, self.layer.name, sign)

    def inputs(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames ``[B, 224, 224, 3]`` -> the model's normalised input."""
        pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        return self.model.preprocess(pixels).contiguous()

    def maps(self, frames: np.ndarray, unit: int, method: str, sign: float = 1.0) -> np.ndarray:
        """Maps ``[B, 224, 224]`` of ``unit`` on uint8 ``frames`` ``[B, 224, 224, 3]``."""
        if method not in METHODS:
            check_methods(method)
        if not self.supports(method):
            raise LayerError(f"Method {method!r} is not defined for units of {self.layer.name!r}.")
        if method != "activation":
            require("zennit" if method == "lrp" else "captum")
        x = self.inputs(frames)
        if method == "activation":
            return self._activation(x, unit, sign)
        with self._unit_output(sign) as forward:
            if method == "gradcam":
                from captum.attr import LayerGradCam

                layer = self.model.module.get_submodule(self.spatial)
                cam = LayerGradCam(forward, layer).attribute(x, target=unit, relu_attributions=True)
                return _to_frame(cam[:, 0])
            if method == "ig":
                from captum.attr import IntegratedGradients

                attr = IntegratedGradients(forward).attribute(
                    x,
                    baselines=torch.zeros_like(x),
                    target=unit,
                    n_steps=self.ig_steps,
                    internal_batch_size=max(len(x), self.ig_steps),
                )
                return _to_frame(attr.sum(dim=1))
            return self._lrp(forward, x, unit)

    def _lrp(self, forward: _UnitOutput, x: torch.Tensor, unit: int) -> np.ndarray:
        from zennit.composites import EpsilonPlusFlat

        canonizers, _ = self._lrp_canonizers()
        composite = EpsilonPlusFlat(canonizers=[c.copy() for c in canonizers])
        x = x.detach().clone().requires_grad_(True)
        with composite.context(forward) as modified:
            out = modified(x)
            seed = torch.zeros_like(out)
            seed[:, unit] = 1.0
            (relevance,) = torch.autograd.grad(out, x, grad_outputs=seed)
        return _to_frame(relevance.sum(dim=1))

    def _activation(self, x: torch.Tensor, unit: int, sign: float) -> np.ndarray:
        captured: list[torch.Tensor] = []
        sub = self.model.module.get_submodule(self.spatial)
        handle = sub.register_forward_hook(lambda m, i, o: captured.append(o[:, unit].detach()))
        try:
            with torch.inference_mode():
                self.model.module(x)
        finally:
            handle.remove()
        return _to_frame(sign * captured[-1].float())
