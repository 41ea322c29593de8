"""Which zennit canonizers a model gets for LRP, and why.

LRP rules assume linear layers followed by simple nonlinearities; batch norms and residual sums
need rewriting first (Motzkus et al. 2022). What each family gets:

- torchvision ResNets (``layer1..layer4`` of BasicBlock / Bottleneck): zennit's
  ``ResNetCanonizer`` (batch norms merged into the convolutions, the residual sum as a module
  with its own rule);
- EfficientNet-Lite (lukemelas style, ``_blocks`` of MBConvBlock): ``NamedMergeBatchNorm`` with
  every (convolution, batch norm) pair by name (stem, expand, depthwise, project, head); the
  inline residual additions stay plain gradient (no module to hook);
- every other model: ``SequentialMergeBatchNorm`` (merges each batch norm that follows a linear or
  convolution leaf in module order; VGG-BN, MobileNets, DenseNet transitions), a no-op when none.
"""

from __future__ import annotations

from torch import nn

from wmprobe.models.loaded import LoadedModel


def _efficientnet_lite_pairs(module: nn.Module) -> list[tuple[list[str], str]] | None:
    names = dict(module.named_modules())
    blocks = getattr(module, "_blocks", None)
    if not isinstance(blocks, nn.ModuleList) or "_conv_stem" not in names:
        return None
    pairs = [(["_conv_stem"], "_bn0"), (["_conv_head"], "_bn1")]
    for i, _ in enumerate(blocks):
        for conv, bn in (
            ("_expand_conv", "_bn0"),
            ("_depthwise_conv", "_bn1"),
            ("_project_conv", "_bn2"),
        ):
            if f"_blocks.{i}.{conv}" in names and f"_blocks.{i}.{bn}" in names:
                pairs.append(([f"_blocks.{i}.{conv}"], f"_blocks.{i}.{bn}"))
    return [(c, b) for c, b in pairs if all(n in names for n in c) and b in names]


def _is_torchvision_resnet(module: nn.Module) -> bool:
    from torchvision.models.resnet import BasicBlock, Bottleneck

    children = dict(module.named_children())
    return all(f"layer{i}" in children for i in range(1, 5)) and any(
        isinstance(m, BasicBlock | Bottleneck) for m in module.modules()
    )


def canonizers_for(model: LoadedModel, prefix: str = "") -> tuple[list, str]:
    """The zennit canonizers for ``model`` and a one-line description of the choice.

    ``prefix``: the path of the model's module inside the module that zennit is given.
    """
    from zennit.canonizers import NamedMergeBatchNorm, SequentialMergeBatchNorm
    from zennit.torchvision import ResNetCanonizer

    module = model.module
    if _is_torchvision_resnet(module):
        return [ResNetCanonizer()], "ResNetCanonizer (batch norms merged, residual sums as modules)"
    pairs = _efficientnet_lite_pairs(module)
    if pairs:
        return (
            [NamedMergeBatchNorm([([prefix + c for c in cs], prefix + b) for cs, b in pairs])],
            f"NamedMergeBatchNorm ({len(pairs)} convolution/batch-norm pairs; inline residual "
            "sums kept as plain gradient)",
        )
    return [
        SequentialMergeBatchNorm()
    ], "SequentialMergeBatchNorm (batch norms after a linear leaf)"
