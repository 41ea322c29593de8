"""Shared fixtures: synthetic images, a tiny registered model, and the optional real data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from wmprobe.models.registry import ModelSpec, register_model

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("WMPROBE_SHARED_DATA", REPO.parent / "shared" / "data"))
IMAGENET_SAMPLES = SHARED_DATA / "imagenet-samples"
CALTECH101 = SHARED_DATA / "caltech-101"


def _real_data(folder: Path):
    """Mark a test ``realdata`` and skip it, saying why, when ``folder`` is absent."""
    skip = pytest.mark.skipif(
        not folder.is_dir(),
        reason=f"real-data test: {folder} is absent (set WMPROBE_SHARED_DATA)",
    )

    def mark(test):
        return pytest.mark.realdata(skip(test))

    return mark


def needs_imagenet_samples():
    return _real_data(IMAGENET_SAMPLES)


def needs_caltech101():
    return _real_data(CALTECH101)


class TinyNet(nn.Module):
    """A small conv net with a linear classifier over 10 classes, built in milliseconds."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 5, stride=4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


def _build_tiny(pretrained: bool, allow_download: bool) -> nn.Module:
    torch.manual_seed(0)
    return TinyNet()


register_model(ModelSpec(name="tiny_test_net", build=_build_tiny, input_size=64, source="test"))


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory):
    """Tests never write to the user's activation cache (~/.cache/wmprobe)."""
    old = os.environ.get("WMPROBE_CACHE")
    os.environ["WMPROBE_CACHE"] = str(tmp_path_factory.mktemp("wmprobe-cache"))
    yield
    if old is None:
        os.environ.pop("WMPROBE_CACHE", None)
    else:
        os.environ["WMPROBE_CACHE"] = old


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    """A folder of 12 synthetic RGB images of various sizes."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(12):
        h, w = 150 + 10 * i, 300 - 8 * i
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"img_{i:02d}.png")
    return root
