"""Helpers for the report and reproduce tests: labelled synthetic images and a small study."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wmprobe.models.registry import ModelSpec, register_model
from wmprobe.probes.images import imagenet_wnids
from wmprobe.study.reproduce import StudyResult, reproduce

from .conftest import TinyNet


def _build_tiny_imagenet(pretrained: bool, allow_download: bool):
    torch.manual_seed(0)
    return TinyNet(classes=1000)


def _build_tiny_b(pretrained: bool, allow_download: bool):
    torch.manual_seed(1)
    return TinyNet(classes=1000)


# ImageNet's 1000 outputs (tiny_test_net has 10), so that the labelled images keep their labels.
register_model(
    ModelSpec(name="tiny_imagenet_net", build=_build_tiny_imagenet, input_size=64, source="test")
)
register_model(ModelSpec(name="tiny_test_net_b", build=_build_tiny_b, input_size=48, source="test"))


def labelled_images(root: Path, n: int = 8) -> Path:
    """``n`` synthetic images named ``<wnid>_img<i>.png`` with the first ten ImageNet classes."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    wnids = imagenet_wnids()[:10]
    for i in range(n):
        h, w = 180 + 7 * i, 260 - 5 * i
        base = rng.integers(0, 120, size=(1, 1, 3))
        pixels = (base + rng.integers(0, 100, size=(h, w, 3))).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"{wnids[i % 10]}_img{i:02d}.png")
    return root


def small_study(images: Path, out: Path, **kwargs) -> StudyResult:
    """Two tiny models and one unknown model on the labelled images, quietly."""
    kwargs.setdefault("models", ["tiny_imagenet_net", "no_such_net", "tiny_test_net_b"])
    kwargs.setdefault("scenarios", ["chinese", "numerals"])
    return reproduce(images, out, num_workers=0, progress=False, say=lambda _: None, **kwargs)
