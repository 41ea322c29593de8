"""Training detectors from synthetic marks only, and calibrating them on held-out clean images.

* :func:`train_map_head`: the per-location head of a ``map`` detector, on cached feature maps of
  synthetic pairs; every location is a sample (target: the mark's pixels cover the cell), plus an
  image-level term on the largest location logit, plus the family of marked locations.
* :func:`linear_probe`: logistic regression on pooled features, clean versus probe images.
* :func:`sensitive_units`: the training-free baseline's units: largest d over scenarios, signed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from wmprobe.scanning.detector import MapHead
from wmprobe.scanning.synthetic import CELL_SHARE
from wmprobe.stats.core import auc


def train_map_head(
    data: dict[str, np.ndarray],
    families: Sequence[str],
    *,
    hidden: int = 32,
    epochs: int = 12,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = False,
) -> MapHead:
    """A :class:`MapHead` fitted on pairs from :func:`wmprobe.scanning.feature_cache.pair_features`.

    Clean sides and hard negatives have no positive location; a marked side's positive locations
    are the cells whose pixels it changed (``CELL_SHARE`` or more).
    """
    torch.manual_seed(seed)
    clean = torch.from_numpy(data["clean"])
    marked = torch.from_numpy(data["marked"])
    n, channels = clean.shape[:2]
    x = torch.cat([clean, marked])  # float16 [2n, C, G, G]
    is_mark = torch.from_numpy(data["is_mark"])
    cells = torch.from_numpy(data["cells"] >= CELL_SHARE) & is_mark[:, None, None]
    target = torch.cat([torch.zeros_like(cells), cells]).float()
    fam_index = {f: i for i, f in enumerate(families)}
    fam = torch.tensor([fam_index.get(v, -1) for v in data["variant"].tolist()])
    fam = torch.cat([torch.full_like(fam, -1), torch.where(is_mark, fam, -1)])
    image_label = target.flatten(1).amax(1)
    head = MapHead(channels, hidden, len(families))
    sample = x[torch.randperm(len(x))[:512]].float()
    head.in_mean.copy_(sample.mean((0, 2, 3), keepdim=True))
    head.in_scale.copy_(sample.std((0, 2, 3), keepdim=True).clamp_min(1e-3))
    pos_weight = torch.tensor(min(50.0, float((1 - target.mean()) / target.mean().clamp_min(1e-6))))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-3)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    head.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x))
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            logits = head(x[idx].float())
            t = target[idx]
            loc = F.binary_cross_entropy_with_logits(logits[:, 0], t, pos_weight=pos_weight)
            top = logits[:, 0].flatten(1).amax(1)
            img = F.binary_cross_entropy_with_logits(top, image_label[idx])
            loss = loc + img
            f = fam[idx]
            if (f >= 0).any():
                sel = f >= 0
                fam_logits = logits[sel, 1:]  # [b, F, G, G]
                mask = t[sel] > 0
                per_cell = fam_logits.permute(0, 2, 3, 1)[mask]
                labels = f[sel][:, None, None].expand_as(mask)[mask]
                loss = loss + 0.3 * F.cross_entropy(per_cell, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if progress:
            print(f"  epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f}", flush=True)
    return head.eval()


@torch.inference_mode()
def map_scores(head: MapHead, maps: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Image scores (largest location logit) of cached maps."""
    out = []
    for start in range(0, len(maps), batch_size):
        logits = head(torch.from_numpy(maps[start : start + batch_size]).float())
        out.append(logits[:, 0].flatten(1).amax(1).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def linear_probe(clean: np.ndarray, probes: Sequence[np.ndarray], C: float = 0.3):
    """Logistic regression (scikit-learn's objective, C) of clean (0) versus every probe set (1).

    Returns the state of a ``linear`` detector: ``mean``, ``scale``, ``weight``, ``bias``.
    """
    from wmprobe.mitigation.heads import fit_head

    x = np.concatenate([clean, *probes]).astype(np.float32)
    y = np.r_[np.zeros(len(clean)), np.ones(sum(len(p) for p in probes))].astype(np.int64)
    fitted = fit_head(x, y, n_classes=2, C=C)
    return {
        "mean": torch.from_numpy(fitted.mean),
        "scale": torch.from_numpy(fitted.scale),
        "weight": torch.from_numpy(fitted.weight[1] - fitted.weight[0]),
        "bias": torch.tensor(float(fitted.bias[1] - fitted.bias[0]), dtype=torch.float64),
    }


def sensitive_units(clean: np.ndarray, probes: Sequence[np.ndarray], k: int = 32):
    """The ``k`` pooled units with the largest d (over the probe sets), signed, standardised.

    As an audit ranks them: per unit and probe set the AUC of clean versus probe; a unit's d is its
    largest ``max(AUC, 1 - AUC)``; its sign is + when the mark raises it. Returns the state of a
    ``units`` detector.
    """
    aucs = np.stack([auc(clean, p) for p in probes])  # [S, U]
    d = np.maximum(aucs, 1 - aucs)
    best = d.argmax(0)
    unit_auc = aucs[best, np.arange(aucs.shape[1])]
    units = np.argsort(-d.max(0), kind="stable")[:k]
    return units_state(clean, units, np.where(unit_auc[units] >= 0.5, 1.0, -1.0), d.max(0)[units])


def units_state(clean: np.ndarray, units: np.ndarray, sign: np.ndarray, d: np.ndarray):
    """A ``units`` detector's state from chosen units, their signs, and clean activations."""
    mean = clean.mean(0).astype(np.float64)
    scale = clean.std(0).astype(np.float64)
    scale[scale < 1e-12] = 1.0
    return {
        "mean": torch.from_numpy(mean),
        "scale": torch.from_numpy(scale),
        "units": torch.from_numpy(np.asarray(units, np.int64)),
        "sign": torch.from_numpy(np.asarray(sign, np.float64)),
        "d": torch.from_numpy(np.asarray(d, np.float64)),
    }
