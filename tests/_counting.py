"""Tiny test models that count the frames they see (and can be slowed down), for cache tests.

Importable from a subprocess (``python -c "import tests._counting"``) as well as from tests.
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn

from wmprobe.models.registry import ModelSpec, register_model

#: Frames seen by every counting model in this process.
FRAMES = {"n": 0}


class CountingNet(nn.Module):
    """A conv net over 10 classes that counts its input frames; sleeps per batch if asked."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 5, stride=4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        FRAMES["n"] += x.shape[0]
        delay = float(os.environ.get("WMPROBE_TEST_DELAY", "0"))
        if delay:
            time.sleep(delay)
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


def register(name: str = "counting_net", *, seed: int = 0, **spec) -> str:
    """Register a counting net under ``name`` (weights from ``seed``); returns the name."""
    register_model(
        ModelSpec(
            name=name,
            build=lambda pretrained, allow_download: CountingNet(seed),
            input_size=spec.pop("input_size", 64),
            source="test",
            **spec,
        )
    )
    return name


register()
