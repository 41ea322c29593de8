"""Models from a local checkpoint (``ckpt:/path/file.pt``) or an entry point (``pkg.mod:factory``).

A checkpoint is read with ``torch.load(weights_only=True)``: tensors and plain containers only,
no code runs. A checkpoint that pickles Python objects (a whole ``nn.Module``) loads only with
``unsafe_load=True`` (``--unsafe-load``), for files whose source you trust. The architecture is
named by ``arch`` (``--arch``) or by the checkpoint's own ``"arch"`` entry; its preprocessing,
feature layer and blocks are the registered architecture's. A classifier of another width than the
architecture's (a fine-tuned head) is rebuilt to the checkpoint's width.

An entry point ``package.module:factory`` is called with no arguments (or ``pretrained=False``
for random init, when it takes that argument) and must return an ``nn.Module``. Its preprocessing
is ImageNet's at 224 px unless the factory carries a ``wmprobe_spec`` dict with any of
``input_size``, ``mean``, ``std``, ``classifier``, ``blocks``, ``class_names``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import pickle
import re
import sys
from pathlib import Path

import torch
from torch import nn

from wmprobe._util import file_digest
from wmprobe.errors import CheckpointError, InvalidArgumentError, UnknownModelError
from wmprobe.models.registry import ModelSpec, get_model_spec, register_provider

PREFIX = "ckpt:"
_ENTRY_POINT = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*)$")
_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
_SPEC_FIELDS = ("input_size", "mean", "std", "classifier", "blocks", "class_names")


def read_checkpoint(path: str | Path, *, unsafe_load: bool = False):
    """The object stored in a checkpoint file, read safely unless ``unsafe_load``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file {str(path)!r} does not exist.")
    try:
        return torch.load(path, map_location="cpu", weights_only=not unsafe_load)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"Checkpoint {str(path)!r} holds Python objects beyond tensors ({first}). Load it "
            "only if you trust its source: `--unsafe-load` (library: unsafe_load=True)."
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"Cannot read checkpoint {str(path)!r}: {exc}") from exc


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(torch.is_tensor(v) for v in obj.values())


def _unpack(obj, path: str) -> tuple[dict | nn.Module, str | None, tuple[str, ...] | None]:
    """(state dict or module, arch stored in the file, class names stored in the file)."""
    if isinstance(obj, nn.Module):
        return obj, None, None
    if _is_state_dict(obj):
        return obj, None, None
    if isinstance(obj, dict):
        arch = obj.get("arch") if isinstance(obj.get("arch"), str) else None
        names = obj.get("class_names")
        names = tuple(str(n) for n in names) if isinstance(names, list | tuple) else None
        for key in _STATE_KEYS:
            inner = obj.get(key)
            if _is_state_dict(inner) or isinstance(inner, nn.Module):
                return inner, arch, names
    raise CheckpointError(
        f"Checkpoint {path!r} holds neither a state dict nor a model (looked at the top level and "
        f"under {', '.join(_STATE_KEYS)})."
    )


def _strip_prefix(state: dict) -> dict:
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _fit_classifier(model: nn.Module, classifier: str | None, state: dict) -> None:
    """Rebuild the final linear layer to the checkpoint's number of classes when they differ."""
    from wmprobe.models.loaded import find_classifier_path

    path = classifier or find_classifier_path(model)
    if path is None or f"{path}.weight" not in state:
        return
    weight = state[f"{path}.weight"]
    layer = model.get_submodule(path)
    if isinstance(layer, nn.Linear) and weight.ndim == 2 and weight.shape[0] != layer.out_features:
        parent_path, _, child = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        new = nn.Linear(layer.in_features, int(weight.shape[0]), bias=layer.bias is not None)
        setattr(parent, child, new)


def checkpoint_spec(path: str | Path, arch: str | None = None, *, unsafe_load: bool = False):
    """The spec of a model whose weights are in a local checkpoint file.

    Example:
        >>> spec = checkpoint_spec("finetuned.pt", arch="resnet50")  # doctest: +SKIP
        >>> load_model(spec.name, arch="resnet50")  # doctest: +SKIP
    """
    path = Path(str(path).removeprefix(PREFIX)).expanduser()
    names: tuple[str, ...] | None = None
    if arch is None:
        _, arch, names = _unpack(read_checkpoint(path, unsafe_load=unsafe_load), str(path))
        if arch is None:
            raise CheckpointError(
                f"Checkpoint {str(path)!r} does not say its architecture; name it with "
                "`--arch NAME` (library: arch=NAME), e.g. --arch resnet50."
            )
    base = get_model_spec(arch)

    def build(pretrained: bool, allow_download: bool) -> nn.Module:
        model = base.build(False, False)
        if not pretrained:
            return model
        content, _, _ = _unpack(read_checkpoint(path, unsafe_load=unsafe_load), str(path))
        if isinstance(content, nn.Module):
            return content
        state = _strip_prefix(content)
        _fit_classifier(model, base.classifier, state)
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shapes that differ
            first = str(exc).strip().splitlines()[-1].strip()
            raise CheckpointError(
                f"Checkpoint {str(path)!r} does not fit the architecture {arch}: {first} "
                "Is --arch right?"
            ) from exc
        if result.missing_keys or result.unexpected_keys:
            raise CheckpointError(
                f"Checkpoint {str(path)!r} does not fit the architecture {arch}: "
                f"missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}. "
                "Is --arch right?"
            )
        return model

    return dataclasses.replace(
        base,
        name=f"{PREFIX}{path}",
        build=build,
        source="checkpoint",
        weights_available=path.is_file,
        weights_hint=f"the file {path}",
        class_names=names or base.class_names,
        code=(lambda: file_digest(path, "blake2b")) if unsafe_load else None,
    )


def _import(module_name: str, entry: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if exc.name and module_name.startswith(exc.name) and cwd not in sys.path:
            sys.path.insert(0, cwd)  # a package beside the caller, as `python -m` would see it
            try:
                return importlib.import_module(module_name)
            except ModuleNotFoundError:
                sys.path.remove(cwd)
        raise UnknownModelError(
            f"Cannot import {module_name!r} for the entry point {entry!r}: {exc}."
        ) from exc


def factory_spec(entry: str) -> ModelSpec:
    """The spec of a model built by a ``package.module:factory`` entry point."""
    match = _ENTRY_POINT.match(entry)
    if match is None:
        raise UnknownModelError(
            f"Expected an entry point `package.module:factory` but got {entry!r}"
        )
    module_name, attr = match.groups()
    factory = getattr(_import(module_name, entry), attr, None)
    if not callable(factory):
        raise UnknownModelError(
            f"{module_name!r} has no callable {attr!r} (entry point {entry!r})."
        )
    extra = dict(getattr(factory, "wmprobe_spec", {}) or {})
    unknown = set(extra) - set(_SPEC_FIELDS)
    if unknown:
        raise InvalidArgumentError(
            f"{entry}.wmprobe_spec has unknown keys {sorted(unknown)}; known: {list(_SPEC_FIELDS)}"
        )
    for key in ("mean", "std", "blocks", "class_names"):
        if key in extra:
            extra[key] = tuple(extra[key])
    takes_pretrained = "pretrained" in inspect.signature(factory).parameters

    def build(pretrained: bool, allow_download: bool) -> nn.Module:
        if not pretrained and not takes_pretrained:
            raise InvalidArgumentError(
                f"The entry point {entry} takes no `pretrained` argument, so it cannot be asked "
                "for random weights."
            )
        model = factory(pretrained=False) if not pretrained else factory()
        if not isinstance(model, nn.Module):
            raise InvalidArgumentError(
                f"{entry}() returned {type(model).__name__}, not a torch nn.Module."
            )
        return model

    def code() -> str:
        from wmprobe.models.loaded import source_digest

        return source_digest(sys.modules.get(module_name) or factory)

    return ModelSpec(name=entry, build=build, source="factory", code=code, **extra)


def _provider(name: str) -> ModelSpec | None:
    if name.startswith(PREFIX):
        return checkpoint_spec(name)
    if _ENTRY_POINT.match(name) and not name.startswith("timm:"):
        return factory_spec(name)
    return None


register_provider(_provider, priority=30)
