"""Layers by name: ``logits``, ``features``, ``blocks`` and any module path; hooks for one pass.

Names:
    ``logits``: the model's output. ``features``: the input of the final linear layer (what the
    paper calls the feature layer). ``blocks``: one layer per stage, for a depth profile (timm's
    ``feature_info`` where the model has it, else per family: ResNet ``layer1-4``, DenseNet dense
    blocks, VGG/AlexNet pooling stages, EfficientNet-Lite block groups, GoogLeNet/Inception stages,
    ShuffleNet stages; else the last module at each resolution of the model's main sequence).
    Any other name is a module path as ``named_modules`` (and torchvision's
    ``get_graph_node_names``) spell it, e.g. ``layer3.1.conv2`` or ``features.denseblock4``;
    ``wmprobe layers --model M`` lists them.

Reduction to one value per unit:
    conv maps ``[B, C, H, W]`` are reduced over space per channel (``mean``, or ``max``); token
    sequences ``[B, T, D]`` of transformers over all tokens, class token included; ``[B, U]`` is
    kept. A 4-D output is taken as channels-last ``[B, H, W, C]`` (Swin) when its known channel
    count (timm ``feature_info``) is its last axis, or else when its middle axes are the square
    ones (inputs are square). A module called more than once in a forward pass reports its last
    call.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from wmprobe._util import did_you_mean
from wmprobe.constants import BLOCKS, FEATURES, LOGITS, SPECIAL_LAYERS
from wmprobe.errors import LayerError
from wmprobe.models.loaded import LoadedModel

REDUCTIONS = ("mean", "max")


@dataclass(frozen=True)
class Layer:
    """One layer to record: its name in tables, the module hooked and how.

    ``hook`` is ``output`` (the module's output), ``input`` (its input: ``features``) or ``model``
    (the model's output: ``logits``). ``channels`` is the known channel count, when known.
    """

    name: str
    module: str | None
    hook: str = "output"
    channels: int | None = None


@dataclass(frozen=True)
class LayerInfo:
    """A module of a model as ``wmprobe layers`` lists it: output shape per image and unit count."""

    name: str
    kind: str
    shape: tuple[int, ...] | None
    units: int | None
    calls: int


def channels_last(shape: Sequence[int], channels: int | None = None) -> bool:
    """Whether a per-image map shape ``(a, b, c)`` is ``(H, W, C)`` rather than ``(C, H, W)``.

    A known channel count decides; else the square axes do (the input is square, so are the maps).
    """
    a, b, c = shape
    if channels is not None and a != channels and c == channels:
        return True
    return b != c and a == b


def reduce_activation(x, reduction: str = "mean", channels: int | None = None) -> torch.Tensor:
    """Reduce a layer's output to ``[B, units]`` float32 (see the module docstring)."""
    if not torch.is_tensor(x):
        raise LayerError(f"Expected a tensor output but got {type(x).__name__}")
    x = x.float()
    if x.ndim == 2:
        return x
    if x.ndim == 4:
        dims: tuple[int, ...] = (1, 2) if channels_last(x.shape[1:], channels) else (2, 3)
    elif x.ndim == 3:
        dims = (1,)
    else:
        raise LayerError(
            f"Expected an output of 2, 3 or 4 dimensions but got shape {tuple(x.shape)}"
        )
    return x.mean(dim=dims) if reduction == "mean" else x.amax(dim=dims)


def _model_output(y) -> torch.Tensor:
    if torch.is_tensor(y):
        return y
    logits = getattr(y, "logits", None)
    if torch.is_tensor(logits):
        return logits
    if isinstance(y, tuple | list) and y and torch.is_tensor(y[0]):
        return y[0]
    raise LayerError(f"The model returned {type(y).__name__}, not a logits tensor.")


def _module_paths(module: nn.Module) -> list[str]:
    return [path for path, _ in module.named_modules() if path]


def unknown_layer(model: LoadedModel, name: str) -> LayerError:
    """The error for a layer name the model lacks: the closest names and the discovery command."""
    known = [*SPECIAL_LAYERS, *_module_paths(model.module)]
    hint = did_you_mean(name, known, cutoff=0.5)
    return LayerError(
        f"Unknown layer {name!r} for {model.name}.{hint} Layers are logits, features, blocks or a "
        f"module path; list them with `wmprobe layers --model {model.name}`."
    )


def resolve_layers(model: LoadedModel, names: Sequence[str]) -> list[Layer]:
    """The layers to record for ``names`` (``blocks`` expanded), in order, without duplicates."""
    if isinstance(names, str):
        names = [names]
    if not names:
        raise LayerError("Expected at least one layer name but got none.")
    modules = dict(model.module.named_modules())
    out: dict[str, Layer] = {}
    for name in names:
        if name == LOGITS:
            out.setdefault(name, Layer(LOGITS, None, "model"))
        elif name == FEATURES:
            if model.classifier_path is None:
                raise LayerError(
                    f"Model {model.name} has no linear classifier, so no `features` layer; "
                    f"name a module instead (`wmprobe layers --model {model.name}`)."
                )
            out.setdefault(name, Layer(FEATURES, model.classifier_path, "input"))
        elif name == BLOCKS:
            for layer in block_layers(model):
                out.setdefault(layer.name, layer)
        elif name in modules and name:
            out.setdefault(name, Layer(name, name, "output"))
        else:
            raise unknown_layer(model, name)
    return list(out.values())


def block_layers(model: LoadedModel) -> list[Layer]:
    """One layer per stage of the model (the ``blocks`` layer name), shallow to deep."""
    module = model.module
    if model.spec.blocks:
        return [Layer(p, p) for p in model.spec.blocks]
    info = getattr(module, "feature_info", None)  # timm: a list of dicts
    if isinstance(info, list) and info and all(isinstance(d, dict) and "module" in d for d in info):
        return [Layer(d["module"], d["module"], channels=d.get("num_chs")) for d in info]
    paths = _family_blocks(module)
    if paths is None:
        paths = _blocks_by_resolution(model)
    return [Layer(p, p) for p in paths]


def _family_blocks(module: nn.Module) -> tuple[str, ...] | None:
    names = dict(module.named_children())
    if all(f"layer{i}" in names for i in range(1, 5)):  # ResNet, ResNeXt, Wide ResNet
        return ("layer1", "layer2", "layer3", "layer4")
    dense = [p for p, _ in module.named_modules() if p.startswith("features.denseblock")]
    dense = [p for p in dense if p.count(".") == 1]
    if dense:  # DenseNet
        return tuple(dense)
    if "inception5b" in names:  # GoogLeNet
        return ("maxpool1", "maxpool2", "maxpool3", "maxpool4", "inception5b")
    if "Mixed_7c" in names:  # Inception v3
        return ("maxpool1", "maxpool2", "Mixed_5d", "Mixed_6e", "Mixed_7c")
    if all(n in names for n in ("stage2", "stage3", "stage4", "conv5")):  # ShuffleNet v2
        return ("maxpool", "stage2", "stage3", "stage4", "conv5")
    blocks = names.get("_blocks")
    if isinstance(blocks, nn.ModuleList) and all(hasattr(b, "_block_args") for b in blocks):
        # EfficientNet(-Lite), lukemelas style: a stage ends where the output width changes.
        widths = [b._block_args.output_filters for b in blocks]
        ends = [i for i in range(len(widths)) if i == len(widths) - 1 or widths[i + 1] != widths[i]]
        return tuple(f"_blocks.{i}" for i in ends)
    features = names.get("features")
    if isinstance(features, nn.Sequential) and all(
        isinstance(m, nn.Conv2d | nn.ReLU | nn.MaxPool2d | nn.BatchNorm2d) for m in features
    ):  # VGG, AlexNet: the pooling stages
        pools = [f"features.{i}" for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
        return tuple(pools) or None
    return None


def _trunk(module: nn.Module) -> str | None:
    """The module path of the model's main sequence: the Sequential/ModuleList with most weights."""
    best, best_size = None, -1
    for path, sub in module.named_modules():
        if path and isinstance(sub, nn.Sequential | nn.ModuleList) and len(sub) >= 3:
            size = sum(p.numel() for p in sub.parameters())
            if size > best_size:
                best, best_size = path, size
    return best


def _blocks_by_resolution(model: LoadedModel) -> tuple[str, ...]:
    trunk = _trunk(model.module)
    if trunk is None:
        raise LayerError(
            f"Cannot find the stages of {model.name}; name its layers instead "
            f"(`wmprobe layers --model {model.name}`)."
        )
    children = [f"{trunk}.{n}" for n, _ in model.module.get_submodule(trunk).named_children()]
    shapes = {i.name: i.shape for i in probe_shapes(model, children)}
    ends = []
    for i, path in enumerate(children):
        shape = shapes.get(path)
        if shape is None:
            continue
        if len(shape) == 2:  # tokens [T, D]: every block is a stage
            ends.append(path)
        elif len(shape) == 3:
            following = [shapes.get(p) for p in children[i + 1 :] if shapes.get(p) is not None]
            if not following or _spatial(following[0]) != _spatial(shape):
                ends.append(path)
    if not ends:
        raise LayerError(f"Cannot find the stages of {model.name}; name its layers instead.")
    return tuple(ends)


def _spatial(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) != 3:
        return tuple(shape)
    return tuple(shape[:2]) if channels_last(shape) else tuple(shape[1:])


def trace_forward(model: LoadedModel, paths: Iterable[str]) -> list[tuple[str, str, tuple | None]]:
    """``(path, module class, output shape per image)`` of the modules at ``paths``, in the order
    they fire during one forward pass of one zero image (a module that runs twice appears twice;
    the shape is None for a non-tensor output)."""
    module = model.module
    wanted = set(paths)
    fired: list[tuple[str, str, tuple | None]] = []
    handles = []

    def hook(path: str):
        def record(mod, inputs, output) -> None:
            shape = tuple(output.shape[1:]) if torch.is_tensor(output) else None
            fired.append((path, type(mod).__name__, shape))

        return record

    for path, sub in module.named_modules():
        if path in wanted:
            handles.append(sub.register_forward_hook(hook(path)))
    size = model.spec.input_size
    try:
        with torch.inference_mode():
            module(torch.zeros(1, 3, size, size, device=model.device))
    finally:
        for h in handles:
            h.remove()
    return fired


def probe_shapes(model: LoadedModel, paths: Sequence[str] | None = None) -> list[LayerInfo]:
    """Output shape (per image) and unit count of modules, from one forward pass of one image.

    On a model built on the ``meta`` device this costs no compute.
    """
    module = model.module
    fired = trace_forward(model, _module_paths(module) if paths is None else paths)
    seen: dict[str, list] = {}
    for path, kind, shape in fired:
        entry = seen.setdefault(path, [kind, None, 0])
        entry[1] = shape
        entry[2] += 1
    out = []
    for path, _ in module.named_modules():
        if path in seen:
            kind, shape, calls = seen[path]
            units = None
            if shape is not None and len(shape) in (1, 2):
                units = shape[-1]
            elif shape is not None and len(shape) == 3:
                units = shape[-1] if channels_last(shape) else shape[0]
            out.append(LayerInfo(path, kind, shape, units, calls))
    return out


def describe_layers(model: LoadedModel, pattern: str = "*") -> list[LayerInfo]:
    """Every module of ``model`` whose path matches ``pattern``, with its output shape and units."""
    infos = probe_shapes(model)
    return [i for i in infos if fnmatch.fnmatch(i.name, pattern)]


class LayerTaps:
    """Forward hooks on the requested layers for the passes inside a ``with`` block.

    The hooks reduce each output to ``[B, units]`` at once (no full feature map is kept); they are
    removed on exit and the model's training flag is restored.

    Example:
        >>> layers = resolve_layers(model, ["logits", "layer4"])  # doctest: +SKIP
        >>> with LayerTaps(model, layers) as taps:  # doctest: +SKIP
        ...     out = taps.run(x)  # {"logits": [B, 1000], "layer4": [B, 2048]}
    """

    def __init__(self, model: LoadedModel, layers: Sequence[Layer], reduction: str = "mean"):
        if reduction not in REDUCTIONS:
            raise LayerError(
                f"Expected argument `reduction` to be one of {REDUCTIONS} but got {reduction!r}"
            )
        self.model = model
        self.layers = list(layers)
        self.reduction = reduction
        self._out: dict[str, torch.Tensor] = {}
        self._handles: list = []
        self._was_training = False

    def _output_hook(self, layer: Layer):
        def hook(module, inputs, output) -> None:
            if not torch.is_tensor(output):
                raise LayerError(
                    f"The output of {layer.name!r} is a {type(output).__name__}, not a tensor; "
                    "pick one of its submodules."
                )
            self._out[layer.name] = reduce_activation(output, self.reduction, layer.channels)

        return hook

    def _input_hook(self, layer: Layer):
        def hook(module, inputs) -> None:
            self._out[layer.name] = reduce_activation(inputs[0], self.reduction).flatten(1)

        return hook

    def __enter__(self) -> LayerTaps:
        module = self.model.module
        self._was_training = module.training
        module.eval()
        try:
            for layer in self.layers:
                if layer.hook == "model":
                    continue
                sub = module.get_submodule(layer.module)
                if layer.hook == "input":
                    handle = sub.register_forward_pre_hook(self._input_hook(layer))
                else:
                    handle = sub.register_forward_hook(self._output_hook(layer))
                self._handles.append(handle)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One forward pass; ``{layer name: [B, units] float32}`` in the order of ``layers``."""
        self._out = {}
        y = self.model.module(x)
        out = {}
        for layer in self.layers:
            if layer.hook == "model":
                out[layer.name] = _model_output(y).float().flatten(1)
            elif layer.name in self._out:
                out[layer.name] = self._out[layer.name]
            else:
                raise LayerError(f"Layer {layer.name!r} was not reached in the forward pass.")
        return out

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.model.module.train(self._was_training)
