"""Activations: one forward pass per image batch over the clean frame and every probe of it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .errors import LayerError
from .images import ImageRecord, jpeg_roundtrip, load_frame
from .models import LoadedModel
from .probes import Scenario

#: Layers every model has: the output logits and the layer that feeds them.
LAYERS = ("logits", "features")
CLEAN = "clean"


@dataclass
class Activations:
    """Activations of one model on the clean images and on each probe set.

    ``values[layer]`` is a float32 array ``[n_images, n_variants, n_units]``; variant 0 is the
    clean image, then one per scenario in ``variants`` order. Row i is ``image_ids[i]``.
    """

    model: str
    image_ids: list[str]
    labels: np.ndarray
    variants: tuple[str, ...]
    values: dict[str, np.ndarray]
    texts: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def get(self, layer: str, variant: str) -> np.ndarray:
        """The ``[n_images, n_units]`` matrix of one layer on one variant (clean or a scenario)."""
        return self.values[layer][:, self.variants.index(variant), :]


class _ProbeDataset(Dataset):
    """Item i: the clean frame of image i and its probe for every scenario, as uint8 tensors."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        scenarios: Sequence[Scenario],
        seed: int,
        jpeg_quality: int | None = None,
    ):
        self.records = list(records)
        self.scenarios = list(scenarios)
        self.seed = seed
        self.jpeg_quality = jpeg_quality

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        try:
            frame = load_frame(record.path)
        except Exception as exc:  # noqa: BLE001 - any unreadable image is a counted skip
            return {"index": index, "error": f"{type(exc).__name__}: {exc}"}
        frames, texts = [frame], []
        for scenario in self.scenarios:
            drawn = scenario.draw(frame, seed=self.seed, image_id=record.image_id)
            frames.append(drawn.image)
            texts.append(drawn.text)
        if self.jpeg_quality is not None:  # both sides alike: after drawing, as load_frame does
            frames = [jpeg_roundtrip(f, self.jpeg_quality) for f in frames]
        pixels = np.stack([np.asarray(f, dtype=np.uint8) for f in frames]).transpose(0, 3, 1, 2)
        return {"index": index, "pixels": torch.from_numpy(pixels), "texts": texts}


def _collate(items: list[dict]) -> list[dict]:
    return items


class _Tap:
    """Captures the input of the classifier (the feature layer) during a forward pass."""

    def __init__(self, model: LoadedModel):
        self.value: torch.Tensor | None = None
        self.handle = None
        if model.classifier is not None:
            self.handle = model.classifier.register_forward_pre_hook(self._hook)

    def _hook(self, module, inputs) -> None:
        x = inputs[0]
        if x.ndim == 4:  # conv maps: average over space
            x = x.mean(dim=(2, 3))
        self.value = x.flatten(1)

    def __enter__(self) -> _Tap:
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.remove()


def default_workers() -> int:
    """DataLoader workers: half the CPUs (drawing is light next to the forward pass), at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def extract(
    model: LoadedModel,
    records: Sequence[ImageRecord],
    scenarios: Sequence[Scenario],
    *,
    seed: int = 0,
    layers: Sequence[str] = LAYERS,
    batch_size: int = 16,
    num_workers: int | None = None,
    progress: bool = True,
    jpeg_quality: int | None = None,
) -> Activations:
    """Run ``model`` once over every image and its probes; all requested layers in one pass.

    Images that cannot be read are skipped and listed in ``Activations.skipped`` with the reason.
    With ``jpeg_quality`` the clean frame and every probe (after drawing) are JPEG-encoded at that
    quality and decoded, both sides alike.
    """
    for layer in layers:
        if layer not in LAYERS:
            raise LayerError(f"Unknown layer {layer!r}; known: {', '.join(LAYERS)}.")
    if "features" in layers and model.classifier is None:
        raise LayerError(f"Model {model.name} has no linear classifier, so no `features` layer.")
    variants = (CLEAN, *(s.name for s in scenarios))
    n = len(records)
    workers = default_workers() if num_workers is None else num_workers
    loader = DataLoader(
        _ProbeDataset(records, scenarios, seed, jpeg_quality),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=model.device.type == "cuda",
        persistent_workers=False,
    )
    values: dict[str, np.ndarray] = {}
    ok = np.zeros(n, dtype=bool)
    texts: dict[str, list[str]] = {s.name: [""] * n for s in scenarios}
    skipped: dict[str, str] = {}
    use_amp = model.device.type == "cuda"
    bar = tqdm(total=n, desc=f"{model.name}: images", unit="img", disable=not progress)
    with _Tap(model) as tap, torch.inference_mode(), bar:
        for batch in loader:
            for item in batch:
                if "error" in item:
                    skipped[records[item["index"]].image_id] = item["error"]
            good = [b for b in batch if "error" not in b]
            bar.update(len(batch))
            if not good:
                continue
            index = np.array([b["index"] for b in good])
            pixels = torch.cat([b["pixels"] for b in good])  # [B*V, 3, 224, 224]
            with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model.module(model.preprocess(pixels))
            outputs = {"logits": logits, "features": tap.value}
            for layer in layers:
                out = outputs[layer].float().cpu().numpy().reshape(len(good), len(variants), -1)
                if layer not in values:
                    values[layer] = np.zeros((n, len(variants), out.shape[-1]), dtype=np.float32)
                values[layer][index] = out
            ok[index] = True
            for b in good:
                for name, text in zip((s.name for s in scenarios), b["texts"], strict=True):
                    texts[name][b["index"]] = text
    keep = np.flatnonzero(ok)
    return Activations(
        model=model.name,
        image_ids=[records[i].image_id for i in keep],
        labels=np.array([records[i].label for i in keep], dtype=np.int64),
        variants=variants,
        values={layer: arr[keep] for layer, arr in values.items()},
        texts={name: [t[i] for i in keep] for name, t in texts.items()},
        skipped=skipped,
    )
