"""A tiny model with a planted mark detector; folders of smooth images with and without marks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from wmprobe.models.registry import ModelSpec, register_model
from wmprobe.scanning.synthetic import artifact_of


class PlantedMarkNet(nn.Module):
    """Channel 0 of ``feat`` is a planted mark detector: local contrast (|Laplacian|) of luminance,
    high on drawn text and near zero on the smooth test images; the other channels are smooth."""

    def __init__(self):
        super().__init__()
        self.feat = nn.Conv2d(3, 4, 5, stride=4, padding=2, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            lap = torch.zeros(5, 5)
            lap[2, 2], lap[1, 2], lap[3, 2], lap[2, 1], lap[2, 3] = 4, -1, -1, -1, -1
            w = torch.zeros(4, 3, 5, 5)
            w[0] = lap / 3
            w[1, :, :, :] = 1 / 75  # brightness
            w[2, 0], w[3, 2] = 1 / 25, 1 / 25  # red, blue
            self.feat.weight.copy_(w)

    def forward(self, x):
        f = self.feat(x)
        f = torch.cat([f[:, :1].abs(), f[:, 1:]], 1)
        return self.fc(self.pool(f).flatten(1))


def _build(pretrained: bool, allow_download: bool) -> nn.Module:
    torch.manual_seed(0)
    return PlantedMarkNet()


register_model(ModelSpec(name="planted_mark_net", build=_build, input_size=128, source="test"))


def smooth_image(rng: np.random.Generator, size: int = 128) -> Image.Image:
    """A smooth colour gradient with faint noise (no edges)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    c0, c1, c2 = rng.uniform(40, 200, 3), rng.uniform(-60, 60, 3), rng.uniform(-60, 60, 3)
    img = c0 + c1 * xx[..., None] + c2 * yy[..., None] + rng.normal(0, 1.5, (size, size, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="session")
def planted_folders(tmp_path_factory):
    """``(backgrounds, test, labels.csv)``: clean backgrounds to train on, and a test folder where
    every other image carries a mark (label 1) drawn with seeds the training never used."""
    root = tmp_path_factory.mktemp("planted")
    bg, test = root / "backgrounds", root / "test" / "sub"
    bg.mkdir()
    test.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(120):
        smooth_image(rng).save(bg / f"bg{i:03d}.png")
    rows = ["file,label,family"]
    marks = ("corner_url", "agency_text", "date_stamp", "latin")
    for i in range(40):
        im = smooth_image(rng)
        label, family = 0, ""
        if i % 2:
            family = marks[(i // 2) % len(marks)]
            im = artifact_of(family).draw(im, np.random.default_rng(10_000 + i)).image
            label = 1
        im.save(test / f"t{i:03d}.png")
        rows.append(f"sub/t{i:03d}.png,{label},{family}")
    labels = root / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return bg, test.parent, labels
