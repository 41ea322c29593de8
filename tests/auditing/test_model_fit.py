"""A model whose outputs are not ImageNet's 1000 classes, audited on ImageNet-named images."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from tests.conftest import TinyNet
from wmprobe.auditing.run import audit
from wmprobe.models.registry import ModelSpec, register_model
from wmprobe.probes.images import imagenet_wnids


def _build_ten(pretrained: bool, allow_download: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    return TinyNet(classes=10)


register_model(ModelSpec(name="tiny_ten_class_net", build=_build_ten, input_size=64, source="test"))


def test_a_10_class_model_on_imagenet_samples_is_audited_without_labels(tmp_path):
    wnids = imagenet_wnids()
    rng = np.random.default_rng(0)
    for i, k in enumerate([0, 5, 478, 999]):
        pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{wnids[k]}_x{i}.png")
    result = audit(
        tmp_path, model="tiny_ten_class_net", scenarios=["latin"], cache=False, num_workers=0,
        progress=False,
    )  # fmt: skip
    assert (result.activations.labels == -1).all()
    assert result.accuracy() is None
    note = result.config["labels_dropped"]
    assert "10 outputs" in note and "1000" in note
    assert note in result.summary()
    paths = result.save(tmp_path / "run")
    assert "accuracy.csv" not in paths
