"""Heads trained the paper's way: augmented images through the frozen backbone each epoch, SGD.

Slow (one backbone pass over the training images per epoch), so off by default; every fraction's
head is trained in the same pass (one backbone forward per batch feeds all heads). The objective is
the one of :mod:`.heads` (mean cross-entropy + ``||W||^2 / (2 C n)``) on augmented images. The
paper gives no recipe beyond SGD on augmented images; the augmentation (random resized crop with
scale 0.25-1 and horizontal flips), momentum 0.9 and the cosine learning-rate schedule are ours.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2
from tqdm.auto import tqdm

from wmprobe.extraction.activations import default_workers
from wmprobe.mitigation.export import strip_classifier
from wmprobe.mitigation.heads import LinearHead, standardiser
from wmprobe.mitigation.sweep import HeadFitter
from wmprobe.models import LoadedModel
from wmprobe.probes.images import FRAME_SIZE, ImageRecord, _to_rgb


class _Augmented(Dataset):
    """Item i: a random resized crop (flipped half the time) of image i as a uint8 frame."""

    def __init__(self, records: Sequence[ImageRecord], seed: int, epoch: int):
        self.records = list(records)
        self.seed, self.epoch = seed, epoch
        self.transform = v2.Compose(
            [
                v2.RandomResizedCrop(FRAME_SIZE, scale=(0.25, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
            ]
        )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        torch.manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFFFFFF)
        with Image.open(self.records[index].path) as im:
            rgb = _to_rgb(ImageOps.exif_transpose(im))
        pixels = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)
        return self.transform(pixels), index


def paper_fitter(
    model: LoadedModel,
    records: Sequence[ImageRecord],
    labels: np.ndarray,
    base_features: np.ndarray,
    n_classes: int,
    *,
    epochs: int = 10,
    lr: float = 0.1,
    momentum: float = 0.9,
    batch_size: int = 64,
    num_workers: int | None = None,
    progress: bool = True,
) -> HeadFitter:
    """A :data:`HeadFitter` that trains every fraction's head by SGD on augmented images.

    ``records[i]`` is the image of downstream row i; ``base_features`` (the cached clean features)
    give the standardisation of each unit on the training rows.
    """
    backbone = strip_classifier(model.module).to(model.device).eval()

    def fit(
        train: np.ndarray, kepts: Sequence[np.ndarray], C: float, seed: int
    ) -> list[LinearHead]:
        mean_all, scale_all = standardiser(base_features[train])
        dev = model.device
        torch.manual_seed(seed)
        heads = nn.ModuleList(nn.Linear(len(k), n_classes) for k in kepts).to(dev)
        for h in heads:
            nn.init.zeros_(h.weight)
            nn.init.zeros_(h.bias)
        kept_t = [torch.as_tensor(k, dtype=torch.long, device=dev) for k in kepts]
        means = [torch.as_tensor(mean_all[k], dtype=torch.float32, device=dev) for k in kepts]
        scales = [torch.as_tensor(scale_all[k], dtype=torch.float32, device=dev) for k in kepts]
        train_records = [records[i] for i in train]
        y_all = torch.as_tensor(np.asarray(labels)[train], dtype=torch.long)
        l2 = 1.0 / (C * len(train))
        steps = epochs * int(np.ceil(len(train) / batch_size))
        opt = torch.optim.SGD(heads.parameters(), lr=lr, momentum=momentum)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
        workers = default_workers() if num_workers is None else num_workers
        bar = tqdm(total=steps, desc="heads (paper way)", disable=not progress)
        with bar:
            for epoch in range(epochs):
                loader = DataLoader(
                    _Augmented(train_records, seed, epoch),
                    batch_size=batch_size,
                    shuffle=True,
                    num_workers=workers,
                    generator=torch.Generator().manual_seed(seed * 1000 + epoch),
                )
                for pixels, index in loader:
                    with torch.no_grad():
                        x = backbone(model.preprocess(pixels))
                        feats = (x.mean(dim=(2, 3)) if x.ndim == 4 else x).flatten(1).float()
                    y = y_all[index].to(dev)
                    loss = 0.0
                    for h, k, m, s in zip(heads, kept_t, means, scales, strict=True):
                        if len(k) == 0:
                            continue
                        z = (feats.index_select(1, k) - m) / s
                        loss = loss + F.cross_entropy(h(z), y) + 0.5 * l2 * (h.weight**2).sum()
                    opt.zero_grad()
                    if torch.is_tensor(loss):
                        loss.backward()
                        opt.step()
                    sched.step()
                    bar.update(1)
        return [
            LinearHead(
                kept=np.asarray(k, dtype=np.int64),
                n_features=base_features.shape[1],
                mean=mean_all[k],
                scale=scale_all[k],
                weight=h.weight.detach().cpu().double().numpy(),
                bias=h.bias.detach().cpu().double().numpy(),
                C=float(C),
                n_iter=steps,
            )
            for h, k in zip(heads, kepts, strict=True)
        ]

    return fit
