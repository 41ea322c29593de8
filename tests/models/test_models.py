import pytest
import torch

from wmprobe.errors import UnknownModelError, WeightsUnavailableError, WmprobeError
from wmprobe.models import get_model_spec, list_models, load_model, resolve_device


def test_unknown_model_names_the_closest():
    with pytest.raises(UnknownModelError, match="resnet50") as info:
        get_model_spec("resnet5O")
    assert "wmprobe models" in str(info.value)


def test_registry_has_the_offline_default_and_paper_models():
    names = list_models()
    assert "efficientnet_lite0" in names and "densenet161" in names
    assert get_model_spec("efficientnet_lite0").weights_available()
    assert get_model_spec("inception_v3").input_size == 299
    assert get_model_spec("regnet_y_400mf").source == "torchvision"  # any torchvision name


def test_missing_torchvision_weights_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match="resnet18.*--download-weights"):
        load_model("resnet18", device="cpu")


def test_random_init_builds_without_weights():
    m = load_model("resnet18", pretrained=False, device="cpu")
    assert m.classifier.in_features == 512 and len(m.class_names) == 1000
    assert not m.module.training


def test_efficientnet_lite0_loads_real_weights():
    m = load_model("efficientnet_lite0", device="cpu")
    assert m.classifier.in_features == 1280
    frames = torch.zeros(2, 3, 224, 224, dtype=torch.uint8)
    x = m.preprocess(frames)
    assert x.shape == (2, 3, 224, 224)
    assert torch.allclose(x, torch.full_like(x, -127 / 128))


def test_preprocess_resizes_the_whole_frame():
    m = load_model("tiny_test_net", device="cpu")
    frames = torch.full((1, 3, 224, 224), 255, dtype=torch.uint8)
    frames[..., :, :112] = 0
    x = m.preprocess(frames)
    assert x.shape == (1, 3, 64, 64)
    # Resized, not cropped: the left half is still dark, the right half bright.
    assert x[0, 0, 32, :30].max() < x[0, 0, 32, 34:].min()


def test_cuda_asked_for_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(WmprobeError, match="no CUDA GPU"):
        resolve_device("cuda")
