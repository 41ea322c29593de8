"""The model registry: the paper's 20 models, presets, timm, checkpoints and entry points."""

import subprocess
import sys

import pytest
import torch
from torch import nn

import wmprobe.models.timm_models as timm_models
from tests.conftest import TinyNet
from wmprobe.errors import CheckpointError, UnknownModelError, WeightsUnavailableError
from wmprobe.models import (
    PAPER20,
    LayerTaps,
    expand_models,
    get_model_spec,
    load_model,
    resolve_layers,
)
from wmprobe.models.torchvision_models import weights_enum

HAS_TIMM = timm_models.has_timm()
needs_timm = pytest.mark.skipif(not HAS_TIMM, reason="needs the optional timm package")

#: Feature widths the paper reports (the input of each model's final linear layer).
PAPER_WIDTHS = {
    "alexnet": 4096,
    "resnet18": 512,
    "densenet161": 2208,
    "googlenet": 1024,
    "inception_v3": 2048,
    "mobilenet_v2": 1280,
    "shufflenet_v2_x1_0": 1024,
    "vgg11": 4096,
    "vit_base_patch16_224": 768,
    "beit_base_patch16_224": 768,
}


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Any attempt to fetch weights fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to download: {args[:1]}")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    if HAS_TIMM:
        import huggingface_hub
        import timm.models._hub

        monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
        monkeypatch.setattr(timm.models._hub, "hf_hub_download", refuse, raising=False)


@pytest.mark.slow
def test_listing_models_does_not_import_timm():
    code = "import sys, wmprobe.models; wmprobe.models.list_models(); print('timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_timm_the_paper_vits_say_how_to_get_it(monkeypatch):
    monkeypatch.setattr(timm_models, "has_timm", lambda: False)
    spec = timm_models._lazy("vit_base_patch16_224")()
    assert not spec.weights_available() and "wmprobe[timm]" in spec.weights_hint


def test_paper20_is_the_papers_list():
    assert len(PAPER20) == 20 and len(set(PAPER20)) == 20
    assert expand_models("paper20") == list(PAPER20)
    sources = {get_model_spec(n).source for n in PAPER20}
    assert sources == {"torchvision", "timm"}
    assert get_model_spec("inception_v3").input_size == 299


@pytest.mark.parametrize("name", PAPER20)
def test_every_paper20_entry_builds_without_weights(name, no_network):
    if name in timm_models.PAPER_TIMM and not HAS_TIMM:
        pytest.skip("ViT and BEiT need the optional timm package")
    # Built on the meta device: the architecture and its shapes, no memory, nothing fetched.
    m = load_model(name, pretrained=False, device="meta")
    size = m.spec.input_size
    with LayerTaps(m, resolve_layers(m, ["logits", "features"])) as taps:
        out = taps.run(torch.empty(2, 3, size, size, device="meta"))
    assert tuple(out["logits"].shape) == (2, 1000)
    assert len(m.class_names) == 1000 and m.class_names[0] == "tench"
    if name in PAPER_WIDTHS:
        assert out["features"].shape[1] == PAPER_WIDTHS[name]


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "vit_base_patch16_224"])
@pytest.mark.slow
def test_random_init_runs_for_real(name, no_network):
    if name.startswith("vit") and not HAS_TIMM:
        pytest.skip("needs the optional timm package")
    m = load_model(name, pretrained=False, device="cpu")
    with LayerTaps(m, resolve_layers(m, ["logits", "features"])) as taps, torch.inference_mode():
        out = taps.run(m.preprocess(torch.zeros(1, 3, 224, 224, dtype=torch.uint8)))
    assert out["logits"].shape == (1, 1000) and torch.isfinite(out["logits"]).all()


def test_each_resnet_name_gets_its_own_architecture():
    # The paper's notebook loaded ResNet-50 weights under the name resnet101.
    expected = {  # parameters, bottleneck/basic blocks per stage
        "resnet18": (11_689_512, [2, 2, 2, 2]),
        "resnet50": (25_557_032, [3, 4, 6, 3]),
        "resnet101": (44_549_160, [3, 4, 23, 3]),
        "resnet152": (60_192_808, [3, 8, 36, 3]),
    }
    for name, (params, blocks) in expected.items():
        m = load_model(name, pretrained=False, device="meta").module
        assert sum(p.numel() for p in m.parameters()) == params, name
        assert [len(getattr(m, f"layer{i}")) for i in range(1, 5)] == blocks, name
        assert f"/{name}-" in weights_enum(name).url, name


def test_expand_models_keeps_order_and_drops_duplicates():
    assert expand_models("resnet18, paper20,efficientnet_lite0")[:3] == [
        "resnet18",
        "alexnet",
        "resnet50",
    ]
    assert expand_models(["efficientnet_lite0", "efficientnet_lite0"]) == ["efficientnet_lite0"]
    with pytest.raises(UnknownModelError, match="resnet50"):
        expand_models("paper20,resnet5O")
    with pytest.raises(UnknownModelError, match="one by one"):
        get_model_spec("paper20")


@needs_timm
def test_torchvision_wins_over_timm_for_shared_names():
    assert get_model_spec("resnet50").source == "torchvision"
    assert get_model_spec("timm:resnet50").source == "timm"
    assert get_model_spec("convnext_tiny").source == "torchvision"
    assert get_model_spec("test_vit").source == "timm"


@needs_timm
def test_timm_spec_follows_its_pretrained_cfg():
    import timm

    for name in ("vit_base_patch16_224", "beit_base_patch16_224"):
        spec = get_model_spec(name)
        cfg = timm.models.get_pretrained_cfg(name)
        assert spec.input_size == cfg.input_size[-1]
        assert spec.mean == tuple(cfg.mean) and spec.std == tuple(cfg.std)
        assert spec.classifier == "head"


@needs_timm
def test_timm_pretrained_without_cache_is_a_clear_error(no_network, monkeypatch):
    monkeypatch.setattr(timm_models, "cached_weights", lambda name: None)
    with pytest.raises(WeightsUnavailableError, match="--download-weights"):
        load_model("test_vit", device="cpu")


@needs_timm
def test_timm_pretrained_reads_the_cached_file(no_network, monkeypatch, tmp_path):
    import timm

    torch.manual_seed(3)
    trained = timm.create_model("test_vit", pretrained=False)
    path = tmp_path / "model.pth"
    torch.save(trained.state_dict(), path)
    monkeypatch.setattr(timm_models, "cached_weights", lambda name: path)
    m = load_model("test_vit", device="cpu")
    for key, value in trained.state_dict().items():
        assert torch.equal(m.module.state_dict()[key], value), key


def _tiny_state(seed: int) -> dict:
    torch.manual_seed(seed)
    return TinyNet().state_dict()


def test_checkpoint_state_dict_with_arch(tmp_path):
    state = _tiny_state(7)
    path = tmp_path / "net.pt"
    torch.save(state, path)
    m = load_model(f"ckpt:{path}", arch="tiny_test_net", device="cpu")
    assert m.name == f"ckpt:{path}" and m.spec.source == "checkpoint"
    assert m.spec.input_size == 64  # the architecture's preprocessing
    assert torch.equal(m.module.conv.weight, state["conv.weight"])
    with pytest.raises(CheckpointError, match="--arch"):
        load_model(f"ckpt:{path}", device="cpu")


def test_checkpoint_from_the_command_line(tmp_path, image_dir):
    from click.testing import CliRunner

    from wmprobe.cli import main

    path = tmp_path / "net.pt"
    torch.save(_tiny_state(7), path)
    argv = ["audit", "--images", str(image_dir), "--out", str(tmp_path / "run"), "--quiet"]
    argv += ["--model", f"ckpt:{path}", "--limit", "3", "--scenarios", "latin"]
    argv += ["--workers", "0", "--no-cache"]
    result = CliRunner().invoke(main, [*argv, "--arch", "tiny_test_net"])
    assert result.exit_code == 0, result.output
    missing = CliRunner().invoke(main, argv)
    assert missing.exit_code == 1 and "--arch" in missing.output


def test_checkpoint_dict_names_its_arch_and_a_new_head(tmp_path):
    state = _tiny_state(8)
    state["fc.weight"], state["fc.bias"] = torch.randn(3, 8), torch.randn(3)
    state = {f"module.{k}": v for k, v in state.items()}  # saved from DataParallel
    path = tmp_path / "finetuned.pt"
    names = ["cat", "dog", "bird"]
    torch.save({"arch": "tiny_test_net", "state_dict": state, "class_names": names}, path)
    m = load_model(f"ckpt:{path}", device="cpu")
    assert m.classifier.out_features == 3 and m.class_names == tuple(names)
    assert torch.equal(m.module.fc.bias, state["module.fc.bias"])


def test_checkpoint_that_does_not_fit(tmp_path):
    path = tmp_path / "net.pt"
    torch.save(_tiny_state(0), path)
    with pytest.raises(CheckpointError, match="does not fit the architecture resnet18"):
        load_model(f"ckpt:{path}", arch="resnet18", device="cpu")


def test_pickled_module_needs_unsafe_load(tmp_path):
    path = tmp_path / "whole.pt"
    torch.manual_seed(9)
    net = TinyNet()
    torch.save({"arch": "tiny_test_net", "model": net}, path)
    with pytest.raises(CheckpointError, match="--unsafe-load"):
        load_model(f"ckpt:{path}", device="cpu")
    m = load_model(f"ckpt:{path}", device="cpu", unsafe_load=True)
    assert torch.equal(m.module.conv.weight, net.conv.weight)


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(f"ckpt:{tmp_path / 'nope.pt'}", arch="resnet18", device="cpu")


def test_entry_point_factory(tmp_path, monkeypatch):
    (tmp_path / "wmprobe_test_factory.py").write_text(
        "import torch\n"
        "from torch import nn\n"
        "def build(pretrained=True):\n"
        "    torch.manual_seed(1 if pretrained else 2)\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "                         nn.Linear(4, 5))\n"
        "build.wmprobe_spec = {'input_size': 32, 'class_names': list('abcde')}\n"
        "def not_a_model():\n"
        "    return 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    m = load_model("wmprobe_test_factory:build", device="cpu")
    assert m.spec.input_size == 32 and m.class_names == tuple("abcde")
    assert m.classifier_path == "3"
    random = load_model("wmprobe_test_factory:build", device="cpu", pretrained=False)
    assert not torch.equal(random.module[0].weight, m.module[0].weight)
    with pytest.raises(Exception, match="not a torch nn.Module"):
        load_model("wmprobe_test_factory:not_a_model", device="cpu")
    with pytest.raises(UnknownModelError, match="Cannot import"):
        load_model("no_such_package_xyz.models:build", device="cpu")
    sys.modules.pop("wmprobe_test_factory", None)


def test_models_are_channels_last_and_hash_is_layout_free():
    m = load_model("tiny_test_net", device="cpu")
    assert m.module.conv.weight.is_contiguous(memory_format=torch.channels_last)
    plain = TinyNet()
    plain.load_state_dict(m.module.state_dict())
    from wmprobe.models import state_dict_hash

    assert state_dict_hash(plain) == m.weights_hash()
    plain.fc.bias.data[0] += 1
    assert state_dict_hash(plain) != m.weights_hash()


def test_model_without_linear_head_has_no_features_layer():
    m = load_model("squeezenet1_0", pretrained=False, device="meta")
    assert m.classifier is None
    from wmprobe.errors import LayerError

    with pytest.raises(LayerError, match="no linear classifier"):
        resolve_layers(m, ["features"])
    assert isinstance(m.module, nn.Module)


class _RunsCodeWhenUnpickled:
    """Unpickling this calls ``os.makedirs(marker)``: any code could run in its place."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.makedirs, (self.marker,))


def test_a_checkpoint_that_runs_code_is_refused_without_unsafe_load(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from wmprobe.cli import main

    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save(
        {"arch": "resnet18", "state_dict": {}, "payload": _RunsCodeWhenUnpickled(marker)}, path
    )
    with pytest.raises(CheckpointError, match="--unsafe-load"):
        load_model(f"ckpt:{path}", device="cpu")
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 64)).save(images / "x.png")
    argv = ["audit", "--model", f"ckpt:{path}", "--images", str(images)]
    argv += ["--out", str(tmp_path / "o")]
    res = CliRunner().invoke(main, argv)
    assert res.exit_code == 1 and "--unsafe-load" in res.output and "Traceback" not in res.output
    assert not marker.exists()  # the file was read, its code never ran
    with pytest.raises(CheckpointError):  # with the flag the code runs: the user's own choice
        load_model(f"ckpt:{path}", device="cpu", unsafe_load=True)
    assert marker.exists()
