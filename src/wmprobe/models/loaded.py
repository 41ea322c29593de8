"""A model ready for extraction: the module, its preprocessing, class names and feature layer."""

from __future__ import annotations

import hashlib
import inspect
import marshal
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models._meta import _IMAGENET_CATEGORIES

from wmprobe._util import file_digest
from wmprobe.errors import InvalidArgumentError, WmprobeError
from wmprobe.models.registry import ModelSpec, get_model_spec


@dataclass
class LoadedModel:
    """A built model in eval mode on its device, with what extraction needs to know about it.

    ``classifier_path`` is the module path of the final linear layer (its input is the
    ``features`` layer), or None when the model has none.
    """

    spec: ModelSpec
    module: nn.Module
    classifier: nn.Linear | None
    class_names: tuple[str, ...]
    device: torch.device
    pretrained: bool
    classifier_path: str | None = None
    _hash: str | None = field(default=None, repr=False)
    _code: str | None = field(default=None, repr=False)
    _norm: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames ``[B, 3, 224, 224]`` -> normalised float input ``[B, 3, S, S]``.

        The whole frame is resized to the model's input size (never cropped), then normalised.
        The result is channels-last in memory, as the model's weights (see :func:`load_model`).
        """
        x = frames.to(self.device, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last).float()  # 0..255
        size = self.spec.input_size
        if x.shape[-1] != size or x.shape[-2] != size:  # linear: commutes with the scaling
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        if self._norm is None:  # (x / 255 - mean) / std == (x - 255 mean) * (1 / (255 std))
            mean = torch.tensor(self.spec.mean, device=self.device).view(1, 3, 1, 1) * 255.0
            std = torch.tensor(self.spec.std, device=self.device).view(1, 3, 1, 1) * 255.0
            self._norm = (mean, 1.0 / std)
        shift, scale = self._norm
        return x.sub_(shift).mul_(scale).contiguous(memory_format=torch.channels_last)

    def weights_hash(self) -> str:
        """A checksum (blake2b) of every parameter and buffer: names, shapes, dtypes and values.

        Two models with equal hashes compute the same function; activation caches key on it.
        """
        if self._hash is None:
            self._hash = state_dict_hash(self.module)
        return self._hash

    def code_hash(self) -> str:
        """A checksum of the code that computes the model beyond its parameters.

        The source of every module class that does not come from torch, torchvision or timm,
        the installed version of those of them the model uses (torch always: its kernels compute
        every model), and what the spec adds: a ``package.module:factory``'s module source, an
        ``--unsafe-load`` checkpoint's bytes. Activation caches key on it, so editing a model's
        code or upgrading torch computes its activations again.
        """
        if self._code is None:
            digest = hashlib.blake2b(digest_size=20)
            classes = {type(m) for m in self.module.modules()}
            libraries = {"torch"}  # its kernels compute every model
            for cls in sorted(classes, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
                package = cls.__module__.split(".")[0]
                if package in _VERSIONED_LIBRARIES:
                    libraries.add(package)
                else:
                    name = f"{cls.__module__}.{cls.__qualname__}"
                    digest.update(f"{name}|{source_digest(cls)}\n".encode())
            for package in sorted(libraries):
                digest.update(f"{package}=={_version_of(package)}\n".encode())
            if self.spec.code is not None:
                digest.update(f"spec|{self.spec.code()}\n".encode())
            self._code = digest.hexdigest()
        return self._code

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype of the forward pass under autocast in extraction: bf16 on CUDA, else None."""
        return torch.bfloat16 if self.device.type == "cuda" else None


#: Packages whose module classes are hashed into :meth:`LoadedModel.code_hash` by their version.
_VERSIONED_LIBRARIES = ("torch", "torchvision", "timm")


def _version_of(package: str) -> str:
    """The installed version of ``package`` (its ``__version__``)."""
    import importlib

    return str(getattr(importlib.import_module(package), "__version__", "unknown"))


def source_digest(obj) -> str:
    """blake2b of the source file that defines ``obj`` (a module, class or function); of its
    compiled code where it has no source file (defined in ``__main__`` of a notebook)."""
    digest = hashlib.blake2b(digest_size=20)
    try:
        path = inspect.getsourcefile(obj)
    except TypeError:
        path = None
    if path and Path(path).is_file():
        return file_digest(path, "blake2b")
    members = vars(obj).values() if inspect.isclass(obj) or inspect.ismodule(obj) else [obj]
    for member in members:
        code = getattr(member, "__code__", None)
        if code is not None:
            digest.update(marshal.dumps(code))
    return digest.hexdigest()


def state_dict_hash(module: nn.Module) -> str:
    """blake2b hex digest of a module's state dict (names, dtypes, shapes and bytes)."""
    digest = hashlib.blake2b(digest_size=20)
    for name, tensor in sorted(module.state_dict().items()):
        if not torch.is_tensor(tensor):
            continue
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        if tensor.device.type == "meta":
            digest.update(b"meta")
            continue
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        if flat.dtype in (torch.bfloat16, torch.float16):
            flat = flat.view(torch.int16)
        elif flat.dtype == torch.bool:
            flat = flat.to(torch.uint8)
        digest.update(memoryview(flat.numpy()).cast("B"))
    return digest.hexdigest()


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else CPU; asking for CUDA without a GPU is an error.

    ``meta`` builds the model without memory or weights: shapes only (``wmprobe layers``).
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InvalidArgumentError(
            f"Unknown device {device!r}; use auto, cpu, cuda or cuda:N."
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise WmprobeError(
            f"Device {device!r} was asked for, but no CUDA GPU is available here; "
            "use --device cpu or --device auto."
        )
    return dev


def find_classifier_path(module: nn.Module) -> str | None:
    """Module path of the last ``nn.Linear`` registered in ``module`` (its input: the features)."""
    last = None
    for path, sub in module.named_modules():
        if isinstance(sub, nn.Linear):
            last = path
    return last


def find_classifier(module: nn.Module) -> nn.Linear | None:
    """The final linear layer (the last ``nn.Linear`` registered); its input is the features."""
    path = find_classifier_path(module)
    return None if path is None else module.get_submodule(path)


def _class_names(spec: ModelSpec, n_out: int) -> tuple[str, ...]:
    if spec.class_names is not None and len(spec.class_names) == n_out:
        return tuple(spec.class_names)
    if n_out == 1000:
        return tuple(_IMAGENET_CATEGORIES)
    return tuple(f"class_{i}" for i in range(n_out))


def load_model(
    name: str,
    *,
    pretrained: bool = True,
    device: str = "auto",
    allow_download: bool = False,
    arch: str | None = None,
    unsafe_load: bool = False,
) -> LoadedModel:
    """Build a registered model, in eval mode on ``device``.

    ``arch`` and ``unsafe_load`` apply to ``ckpt:/path/file.pt`` models (see
    :mod:`wmprobe.models.checkpoint`). ``device="meta"`` builds shapes only, without weights.
    Conv weights are kept channels-last in memory (as :meth:`LoadedModel.preprocess` makes the
    input): measured 1.1-1.9x faster on CPU for the paper's CNNs, same values up to rounding.

    Example:
        >>> m = load_model("efficientnet_lite0", device="cpu")
        >>> m.spec.input_size, len(m.class_names)
        (224, 1000)
    """
    from wmprobe.models.checkpoint import PREFIX, checkpoint_spec

    if name.startswith(PREFIX):
        spec = checkpoint_spec(name, arch, unsafe_load=unsafe_load)
    elif arch is not None:
        raise InvalidArgumentError(
            f"`arch` names the architecture of a ckpt: model, not of {name!r}."
        )
    else:
        spec = get_model_spec(name)
    return load_spec(spec, pretrained=pretrained, device=device, allow_download=allow_download)


def load_spec(
    spec: ModelSpec, *, pretrained: bool = True, device: str = "auto", allow_download: bool = False
) -> LoadedModel:
    """Build the model ``spec`` describes, as :func:`load_model` does (a worker process of an
    engine gets the spec itself, so it needs no registry entry)."""
    dev = resolve_device(device)
    if dev.type == "meta":
        with torch.device("meta"):
            module = spec.build(False, False)
        pretrained = False
    else:
        module = spec.build(pretrained, allow_download)
    module = module.eval().to(dev)
    if dev.type != "meta":
        module = module.to(memory_format=torch.channels_last)
    path = spec.classifier or find_classifier_path(module)
    classifier = module.get_submodule(path) if path else None
    if classifier is not None and not isinstance(classifier, nn.Linear):
        path, classifier = None, None
    n_out = classifier.out_features if classifier is not None else 1000
    return LoadedModel(
        spec=spec,
        module=module,
        classifier=classifier,
        class_names=_class_names(spec, n_out),
        device=dev,
        pretrained=pretrained,
        classifier_path=path,
    )
