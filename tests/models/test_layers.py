"""Layers: names, blocks per family, reductions, hooks in a scope, and `wmprobe layers`."""

import pytest
import torch
from click.testing import CliRunner

from wmprobe.cli import main
from wmprobe.errors import LayerError
from wmprobe.models import LayerTaps, load_model, resolve_layers
from wmprobe.models.layers import reduce_activation


def _blocks(name: str) -> list[str]:
    return [layer.name for layer in resolve_layers(load_model(name, device="meta"), ["blocks"])]


def _widths(name: str, layers: list[str]) -> dict[str, int]:
    m = load_model(name, pretrained=False, device="meta")
    size = m.spec.input_size
    with LayerTaps(m, resolve_layers(m, layers)) as taps:
        out = taps.run(torch.empty(1, 3, size, size, device="meta"))
    return {k: v.shape[1] for k, v in out.items()}


@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet50", ["layer1", "layer2", "layer3", "layer4"]),
        ("densenet121", [f"features.denseblock{i}" for i in range(1, 5)]),
        ("vgg11", ["features.2", "features.5", "features.10", "features.15", "features.20"]),
        ("alexnet", ["features.2", "features.5", "features.12"]),
        ("googlenet", ["maxpool1", "maxpool2", "maxpool3", "maxpool4", "inception5b"]),
        ("inception_v3", ["maxpool1", "maxpool2", "Mixed_5d", "Mixed_6e", "Mixed_7c"]),
        ("shufflenet_v2_x1_0", ["maxpool", "stage2", "stage3", "stage4", "conv5"]),
        ("mobilenet_v2", ["features.1", "features.3", "features.6", "features.13", "features.18"]),
        ("efficientnet_lite0", [f"_blocks.{i}" for i in (0, 2, 4, 7, 10, 14, 15)]),
        ("vit_base_patch16_224", [f"blocks.{i}" for i in range(12)]),
    ],
)
def test_blocks_per_family(name, expected):
    assert _blocks(name) == expected


def test_blocks_widths_and_channels_last_outputs():
    assert list(_widths("resnet18", ["blocks"]).values()) == [64, 128, 256, 512]
    # torchvision's Swin keeps maps as [B, H, W, C]: still one unit per channel.
    assert list(_widths("swin_t", ["blocks"]).values()) == [96, 192, 384, 768]
    assert list(_widths("timm:swin_tiny_patch4_window7_224", ["blocks"]).values()) == [
        96,
        192,
        384,
        768,
    ]


def test_unknown_layer_names_the_closest_and_the_command():
    m = load_model("resnet18", device="meta")
    with pytest.raises(LayerError, match="layer4") as info:
        resolve_layers(m, ["layer5"])
    assert "wmprobe layers --model resnet18" in str(info.value)


def test_layers_are_expanded_in_order_without_duplicates():
    m = load_model("resnet18", device="meta")
    names = [x.name for x in resolve_layers(m, ["logits", "layer4", "blocks", "features"])]
    assert names == ["logits", "layer4", "layer1", "layer2", "layer3", "features"]


def test_reductions():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert torch.equal(reduce_activation(x, "mean"), x.mean(dim=(2, 3)))
    assert torch.equal(reduce_activation(x, "max"), x.amax(dim=(2, 3)))
    tokens = torch.randn(2, 5, 4)  # [B, T, D]: over tokens, class token included
    assert torch.allclose(reduce_activation(tokens, "mean"), tokens.mean(dim=1))
    nhwc = torch.randn(2, 7, 7, 16)
    assert reduce_activation(nhwc, "mean").shape == (2, 16)
    assert reduce_activation(torch.randn(2, 16, 7, 7), "mean").shape == (2, 16)
    with pytest.raises(LayerError):
        reduce_activation(torch.randn(2, 3, 4, 5, 6))


def test_module_path_values_and_hooks_removed():
    m = load_model("tiny_test_net", device="cpu")
    m.module.train()
    x = torch.randn(3, 3, 64, 64)
    layers = resolve_layers(m, ["logits", "features", "conv"])
    with LayerTaps(m, layers, reduction="max") as taps, torch.inference_mode():
        out = taps.run(x)
        assert not m.module.training
    with torch.inference_mode():
        conv = m.module.conv(x)
        logits = m.module(x)
    assert torch.allclose(out["conv"], conv.amax(dim=(2, 3)))
    assert torch.allclose(out["features"], torch.relu(conv).mean(dim=(2, 3)))  # pooled input
    assert torch.allclose(out["logits"], logits)
    assert m.module.training  # restored
    assert not m.module.conv._forward_hooks and not m.module.fc._forward_pre_hooks


def test_hooks_are_removed_when_the_pass_fails():
    m = load_model("tiny_test_net", device="cpu")
    with pytest.raises(RuntimeError), LayerTaps(m, resolve_layers(m, ["conv"])) as taps:
        taps.run(torch.randn(1, 4, 64, 64))  # wrong channel count
    assert not m.module.conv._forward_hooks


def test_tuple_output_is_a_clear_error():
    m = load_model("vit_b_16", device="meta")
    with (
        pytest.raises(LayerError, match="not a tensor"),
        LayerTaps(m, resolve_layers(m, ["encoder.layers.encoder_layer_0.self_attention"])) as t,
    ):
        t.run(torch.empty(1, 3, 224, 224, device="meta"))


def test_layers_command():
    result = CliRunner().invoke(main, ["layers", "--model", "resnet18", "--pattern", "layer4.1*"])
    assert result.exit_code == 0, result.output
    assert "blocks    layer1, layer2, layer3, layer4" in result.output
    assert "features  512 units (input of fc)" in result.output
    assert "layer4.1.conv2" in result.output and "512x7x7" in result.output
    bad = CliRunner().invoke(main, ["layers", "--model", "resnet5O"])
    assert bad.exit_code == 1 and "Did you mean resnet50" in bad.output
    assert "Traceback" not in bad.output


def test_audit_with_a_module_path_and_max(image_dir):
    from wmprobe.auditing.run import audit

    result = audit(
        image_dir,
        model="tiny_test_net",
        scenarios=["latin"],
        layers=["conv", "logits"],
        reduction="max",
        progress=False,
        num_workers=0,
        limit=4,
        cache=False,
    )
    assert set(result.table["layer"]) == {"conv", "logits"}
    assert (result.table["layer"] == "conv").sum() == 8
    with pytest.raises(LayerError, match="wmprobe layers --model tiny_test_net"):
        audit(image_dir, model="tiny_test_net", scenarios=["latin"], layers=["conv9"], limit=2)
