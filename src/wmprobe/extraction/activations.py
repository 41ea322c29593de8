"""Activations: one forward pass per batch over the clean frames and every probe of them.

Reading, framing and drawing run in DataLoader workers while the model runs; every requested layer
is recorded in the same pass (hooks, :mod:`wmprobe.models.layers`). With a cache
(:mod:`wmprobe.extraction.cache`) each (variant, layer) is an entry of its own: the clean entry
is shared by
every scenario, a run computes only the chunks and variants that are missing, and a killed run
resumes where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate, get_worker_info
from tqdm.auto import tqdm

from wmprobe.constants import CLEAN, DEFAULT_LAYERS
from wmprobe.errors import ImageFolderError, InvalidArgumentError, LayerError, WmprobeError
from wmprobe.extraction._cpu import inference_scope
from wmprobe.extraction.cache import DTYPES, ActivationCache, CacheEntry, EntryKey, acquire, release
from wmprobe.models import REDUCTIONS, LayerTaps, LoadedModel, resolve_layers
from wmprobe.probes.images import (
    FRAME_SIZE,
    ImageRecord,
    check_jpeg_quality,
    jpeg_roundtrip,
    load_frame,
)
from wmprobe.probes.scenario import Scenario


class LayerValues(Mapping):
    """``values[layer]`` -> ``[n_images, n_variants, n_units]``, assembled in memory on first use.

    One variant of one layer (:meth:`variant`) is a read-only memory map when it comes from the
    cache; prefer it (``Activations.get``) on large image sets.
    """

    def __init__(
        self,
        sources: dict[str, dict[str, np.ndarray | CacheEntry]],
        variants: Sequence[str],
        keep: np.ndarray | None,
    ):
        self._sources = sources
        self._variants = tuple(variants)
        self._keep = keep
        self._stacked: dict[str, np.ndarray] = {}

    def __getitem__(self, layer: str) -> np.ndarray:
        if layer not in self._sources:
            raise KeyError(layer)
        if layer not in self._stacked:
            parts = [self.variant(layer, v) for v in self._variants]
            self._stacked[layer] = np.stack(parts, axis=1)
        return self._stacked[layer]

    def __contains__(self, layer: object) -> bool:  # without assembling the layer in memory
        return layer in self._sources

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)

    def variant(self, layer: str, variant: str) -> np.ndarray:
        """``[n_images, n_units]`` of one variant (a memory map when cached and nothing skipped)."""
        source = self._sources[layer][variant]
        values = source.open_values() if isinstance(source, CacheEntry) else source
        return values if self._keep is None else values[self._keep]

    def block(self, layer: str, variant: str, start: int, stop: int) -> np.ndarray:
        """Units ``start:stop`` of one variant, ``[n_images, stop - start]``, read into memory."""
        source = self._sources[layer][variant]
        if isinstance(source, CacheEntry):
            values = source.read_units(start, stop)
        else:
            values = source[:, start:stop]
        return values if self._keep is None else values[self._keep]

    def units(self, layer: str) -> int:
        source = next(iter(self._sources[layer].values()))
        if isinstance(source, CacheEntry):
            return int(source.manifest()["n_units"])
        return int(source.shape[1])


@dataclass
class Activations:
    """Activations of one model on the clean images and on each probe set.

    ``values[layer]`` is an array ``[n_images, n_variants, n_units]`` (float32, or float16 when
    cached so); variant 0 is the clean image, then one per scenario in ``variants`` order. Row i is
    ``image_ids[i]``. :meth:`get` gives one variant without assembling the others.
    ``frames_computed``: frames (an image on one variant) that went through the model in the
    call that made this; 0 when everything came from the cache.
    """

    model: str
    image_ids: list[str]
    labels: np.ndarray
    variants: tuple[str, ...]
    values: Mapping[str, np.ndarray]
    texts: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    frames_computed: int = 0

    def get(self, layer: str, variant: str) -> np.ndarray:
        """The ``[n_images, n_units]`` matrix of one layer on one variant (clean or a scenario)."""
        if layer not in self.values or variant not in self.variants:
            raise InvalidArgumentError(
                f"Expected a layer in {list(self.values)} and a variant in {list(self.variants)} "
                f"but got {layer!r} and {variant!r}"
            )
        if isinstance(self.values, LayerValues):
            return self.values.variant(layer, variant)
        return self.values[layer][:, self.variants.index(variant), :]

    def units(self, layer: str) -> int:
        """Number of units of ``layer``."""
        if isinstance(self.values, LayerValues):
            return self.values.units(layer)
        return int(self.values[layer].shape[-1])

    def block(self, layer: str, variant: str, start: int, stop: int) -> np.ndarray:
        """Units ``start:stop`` of one layer on one variant, ``[n_images, stop - start]``.

        Read from disk into memory when cached: memory stays bounded by the block, not the layer.
        """
        if isinstance(self.values, LayerValues):
            return self.values.block(layer, variant, start, stop)
        return self.get(layer, variant)[:, start:stop]


def require_readable(acts: Activations, n_images: int) -> Activations:
    """``acts``; ``ImageFolderError`` (with the first reasons) when none of the ``n_images``
    images could be read."""
    if not acts.image_ids:
        raise ImageFolderError(
            f"None of the {n_images} images could be read; first reasons: "
            + "; ".join(list(acts.skipped.values())[:3])
        )
    return acts


class _ProbeDataset(Dataset):
    """Item ``(i, variants)``: the frames of image i for those variants (0: clean, s+1: scenario s),
    as uint8 ``[k, H, W, 3]``, and the texts drawn."""

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

    def __getitem__(self, item: tuple[int, tuple[int, ...]]) -> dict:
        index, variants = item
        record = self.records[index]
        try:
            frame = load_frame(record.path)
        except Exception as exc:  # noqa: BLE001 - any unreadable image is a counted skip
            return {"index": index, "error": f"{type(exc).__name__}: {exc}"}
        frames, texts = [], []
        for v in variants:
            if v == 0:
                frames.append(frame)
                continue
            try:
                drawn = self.scenarios[v - 1].draw(frame, seed=self.seed, image_id=record.image_id)
            except WmprobeError as exc:  # raised again, cleanly, in the main process
                return {"index": index, "fatal": exc}
            frames.append(drawn.image)
            texts.append(drawn.text)
        if self.jpeg_quality is not None:  # both sides alike, probes after drawing
            frames = [jpeg_roundtrip(f, self.jpeg_quality) for f in frames]
        pixels = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])
        return {"index": index, "pixels": pixels, "texts": texts}


def _collate(items: list[dict]) -> dict:
    """One batch: a single uint8 tensor ``[B, k, H, W, 3]`` (shared memory in a worker)."""
    good = [it for it in items if "pixels" in it]
    batch = {
        "index": [it["index"] for it in good],
        "texts": [it["texts"] for it in good],
        "errors": {it["index"]: it["error"] for it in items if "error" in it},
        "fatal": next((it["fatal"] for it in items if "fatal" in it), None),
        "size": len(items),
    }
    if good:
        tensors = [torch.from_numpy(it["pixels"]) for it in good]
        if get_worker_info() is None:
            batch["pixels"] = torch.stack(tensors)
        else:
            batch["pixels"] = default_collate(tensors)  # stacks straight into shared memory
    return batch


def as_frames(pixels: torch.Tensor) -> torch.Tensor:
    """``[B, k, H, W, 3]`` uint8 -> ``[B * k, 3, H, W]``, a channels-last view (no copy)."""
    b, k, h, w, c = pixels.shape
    return pixels.view(b * k, h, w, c).permute(0, 3, 1, 2)


def default_workers() -> int:
    """DataLoader workers: half the CPUs (drawing is light next to the forward pass), at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


class _Chunk:
    """The rows of one chunk of images as they come in, per (variant, layer)."""

    def __init__(self, start: int, rows: int, variants: tuple[int, ...]):
        self.start, self.rows, self.variants = start, rows, variants
        self.values: dict[tuple[int, str], np.ndarray] = {}
        self.ok = np.zeros(rows, dtype=bool)
        self.errors: dict[int, str] = {}
        self.texts: dict[int, list[str]] = {v: [""] * rows for v in variants if v > 0}

    def put(self, index: list[int], outputs: dict[str, np.ndarray], texts: list[list[str]]) -> None:
        rows = np.asarray(index) - self.start
        for name, arr in outputs.items():  # arr: [B, k, units]
            for j, v in enumerate(self.variants):
                if (v, name) not in self.values:
                    self.values[v, name] = np.zeros((self.rows, arr.shape[-1]), dtype=np.float32)
                self.values[v, name][rows] = arr[:, j]
        self.ok[rows] = True
        scenario_variants = [v for v in self.variants if v > 0]
        for r, drawn in zip(rows, texts, strict=True):
            for v, text in zip(scenario_variants, drawn, strict=True):
                self.texts[v][r] = text


class _MemorySink:
    """Without a cache: every (variant, layer) in memory."""

    def __init__(self, n: int, layers: Sequence[str], n_variants: int):
        self.n, self.layers, self.n_variants = n, list(layers), n_variants
        self.arrays: dict[tuple[int, str], np.ndarray] = {}
        self.ok = np.zeros(n, dtype=bool)
        self.errors: dict[int, str] = {}
        self.texts: dict[int, list[str]] = {v: [""] * n for v in range(1, n_variants)}

    def write(self, chunk: _Chunk) -> None:
        sl = slice(chunk.start, chunk.start + chunk.rows)
        for (v, name), values in chunk.values.items():
            if (v, name) not in self.arrays:
                self.arrays[v, name] = np.zeros((self.n, values.shape[1]), dtype=np.float32)
            self.arrays[v, name][sl] = values
        self.ok[sl] = chunk.ok
        self.errors.update({chunk.start + r: why for r, why in chunk.errors.items()})
        for v, texts in chunk.texts.items():
            self.texts[v][sl] = texts


def _check_arguments(scenarios, reduction, dtype, jpeg_quality, batch_size) -> None:
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names) or CLEAN in names:
        raise InvalidArgumentError(
            f"Expected distinct scenario names other than 'clean' but got {names}"
        )
    if reduction not in REDUCTIONS:
        raise LayerError(
            f"Expected argument `reduction` to be one of {REDUCTIONS} but got {reduction!r}"
        )
    if dtype not in DTYPES:
        raise InvalidArgumentError(
            f"Expected argument `dtype` to be one of {DTYPES} but got {dtype!r}"
        )
    if batch_size < 1:
        raise InvalidArgumentError(
            f"Expected argument `batch_size` to be >= 1 but got {batch_size}"
        )
    if jpeg_quality is not None:
        check_jpeg_quality(jpeg_quality)


def extract(
    model: LoadedModel,
    records: Sequence[ImageRecord],
    scenarios: Sequence[Scenario],
    *,
    seed: int = 0,
    layers: Sequence[str] = DEFAULT_LAYERS,
    batch_size: int = 16,
    num_workers: int | None = None,
    progress: bool = True,
    cache: ActivationCache | str | Path | None = None,
    reduction: str = "mean",
    dtype: str = "float32",
    jpeg_quality: int | None = None,
    threads: int | None = None,
) -> Activations:
    """Run ``model`` once over every image and its probes; all requested layers in one pass.

    Args:
        layers: ``logits``, ``features``, ``blocks`` or module paths (see ``wmprobe layers``).
        batch_size: images per batch; each brings its clean frame and its probes along.
        cache: an :class:`~wmprobe.extraction.cache.ActivationCache` or its folder; None: in
            memory only.
        reduction: ``mean`` or ``max`` over space (conv maps) or tokens (transformers).
        dtype: ``float32`` or ``float16``, as stored in the cache.
        jpeg_quality: JPEG-encode the clean frame and each probe after drawing (in the cache key).
        threads: torch intra-op threads during the pass (None: as set); restored after.

    Images that cannot be read are skipped and listed in ``Activations.skipped`` with the reason.
    With ``jpeg_quality`` the clean frame and every probe (after drawing) are JPEG-encoded at that
    quality and decoded, both sides alike.
    """
    scenarios = list(scenarios)
    _check_arguments(scenarios, reduction, dtype, jpeg_quality, batch_size)
    layer_list = resolve_layers(model, layers)
    names = [layer.name for layer in layer_list]
    variants = (CLEAN, *(s.name for s in scenarios))
    records = list(records)
    n = len(records)
    if isinstance(cache, str | Path):
        cache = ActivationCache(cache)
    entries: dict[tuple[int, str], CacheEntry] = {}
    if cache is not None:
        entries = _entries(
            cache,
            model,
            records,
            scenarios,
            names,
            variants,
            seed=seed,
            reduction=reduction,
            dtype=dtype,
            jpeg_quality=jpeg_quality,
        )
        chunk_size = cache.chunk_size
    else:
        chunk_size = max(batch_size, 256)
    sink = _MemorySink(n, names, len(variants))
    locks = acquire([e for e in entries.values() if not e.is_complete()], announce=progress)
    try:
        for entry in entries.values():
            if not entry.is_complete():
                entry.begin()
        done = {k: e.done_chunks() for k, e in entries.items()}
        schedule = _schedule(n, chunk_size, batch_size, variants, names, done if cache else None)
        if schedule:
            _run(
                model,
                records,
                scenarios,
                layer_list,
                schedule,
                sink,
                entries,
                seed=seed,
                batch_size=batch_size,
                num_workers=num_workers,
                progress=progress,
                reduction=reduction,
                jpeg_quality=jpeg_quality,
                threads=threads,
            )
        for entry in entries.values():
            entry.finish()
    finally:
        release(locks)
    if cache is not None:
        acts = _from_entries(model.name, records, variants, names, entries)
    else:
        acts = _from_memory(model.name, records, variants, names, sink)
    acts.frames_computed = sum(len(batch[5]) * len(batch[3]) for batch in schedule)
    return acts


def _entries(
    cache, model, records, scenarios, names, variants, *, seed, reduction, dtype, jpeg_quality
) -> dict[tuple[int, str], CacheEntry]:
    images = cache.images_digest([r.image_id for r in records], [r.path for r in records])
    weights = model.weights_hash()
    out = {}
    for v, variant in enumerate(variants):
        artifact = None if v == 0 else scenarios[v - 1].spec_hash()
        for name in names:
            key = EntryKey(
                model=model.name,
                weights=weights,
                variant=variant,
                artifact=artifact,
                seed=None if v == 0 else seed,
                layer=name,
                reduction=reduction,
                frame_size=FRAME_SIZE,
                input_size=model.spec.input_size,
                mean=tuple(model.spec.mean),
                std=tuple(model.spec.std),
                jpeg_quality=jpeg_quality,
                images=images,
                n_images=len(records),
                dtype=dtype,
            )
            out[v, name] = cache.entry(key)
    return out


def _schedule(n, chunk_size, batch_size, variants, names, done):
    """Batches to run: ``(chunk, start, rows, variant ids, needed, items, last)``.

    ``needed`` is the set of (variant, layer) entries that lack the chunk.
    """
    out = []
    for chunk in range(-(-n // chunk_size)):
        start = chunk * chunk_size
        rows = min(chunk_size, n - start)
        if done is None:
            needed = {(v, name) for v in range(len(variants)) for name in names}
        else:
            needed = {key for key, chunks in done.items() if chunk not in chunks}
        if not needed:
            continue
        vids = tuple(sorted({v for v, _ in needed}))
        for b0 in range(start, start + rows, batch_size):
            b1 = min(b0 + batch_size, start + rows)
            items = [(i, vids) for i in range(b0, b1)]
            out.append((chunk, start, rows, vids, needed, items, b1 == start + rows))
    return out


def _run(
    model,
    records,
    scenarios,
    layer_list,
    schedule,
    sink,
    entries,
    *,
    seed,
    batch_size,
    num_workers,
    progress,
    reduction,
    jpeg_quality,
    threads,
) -> None:
    workers = default_workers() if num_workers is None else num_workers
    loader = DataLoader(
        _ProbeDataset(records, scenarios, seed, jpeg_quality),
        batch_sampler=[items for *_, items, _ in schedule],
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=model.device.type == "cuda",
    )
    total = sum(len(items) for *_, items, _ in schedule)
    bar = tqdm(total=total, desc=f"{model.name}: images", unit="img", disable=not progress)
    current: _Chunk | None = None
    scope = inference_scope(threads)
    with scope as memory, LayerTaps(model, layer_list, reduction) as taps, bar:
        for (chunk, start, rows, vids, needed, _, last), batch in zip(
            schedule, loader, strict=True
        ):
            if batch["fatal"] is not None:
                raise batch["fatal"]
            if current is None:
                current = _Chunk(start, rows, vids)
            current.errors.update({i - start: why for i, why in batch["errors"].items()})
            if "pixels" in batch:
                with torch.inference_mode():
                    outputs = _forward(model, taps, batch["pixels"])
                current.put(batch["index"], outputs, batch["texts"])
                memory.step()
            bar.update(batch["size"])
            if last:
                _write_chunk(chunk, current, needed, sink, entries, records)
                current = None


def _forward(model: LoadedModel, taps: LayerTaps, pixels: torch.Tensor) -> dict[str, np.ndarray]:
    """One batch ``[B, k, H, W, 3]`` through the model: ``{layer: [B, k, units]}``."""
    b, k = pixels.shape[:2]
    x = model.preprocess(as_frames(pixels))
    amp = model.device.type == "cuda"
    with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=amp):
        out = taps.run(x)
    return {name: t.cpu().numpy().reshape(b, k, -1) for name, t in out.items()}


def _write_chunk(chunk, data: _Chunk, needed, sink: _MemorySink, entries, records) -> None:
    if not entries:
        sink.write(data)
        return
    errors = {records[data.start + r].image_id: why for r, why in data.errors.items()}
    for v, name in sorted(needed):
        values = data.values.get((v, name)) if data.ok.any() else None
        texts = data.texts.get(v)
        entries[v, name].write_chunk(chunk, values, data.ok, errors, texts)


def _kept(records, ok: np.ndarray):
    keep = np.flatnonzero(ok)
    ids = [records[i].image_id for i in keep]
    labels = np.array([records[i].label for i in keep], dtype=np.int64)
    return keep, ids, labels


def _from_memory(model_name, records, variants, names, sink: _MemorySink) -> Activations:
    keep, ids, labels = _kept(records, sink.ok)
    sources = {
        name: {variants[v]: sink.arrays[v, name] for v in range(len(variants))}
        for name in names
        if all((v, name) in sink.arrays for v in range(len(variants)))
    }
    return Activations(
        model=model_name,
        image_ids=ids,
        labels=labels,
        variants=variants,
        values=LayerValues(sources, variants, None if keep.size == len(records) else keep),
        texts={variants[v]: [t[i] for i in keep] for v, t in sink.texts.items()},
        skipped={records[i].image_id: why for i, why in sorted(sink.errors.items())},
    )


def _from_entries(model_name, records, variants, names, entries) -> Activations:
    ok = np.ones(len(records), dtype=bool)
    skipped: dict[str, str] = {}
    texts: dict[str, list[str]] = {}
    for (v, _), entry in entries.items():
        rows = entry.rows()
        ok &= np.asarray(rows["ok"], dtype=bool)
        skipped.update(rows["errors"])
        if v > 0 and rows["texts"] is not None:
            texts[variants[v]] = rows["texts"]
    keep, ids, labels = _kept(records, ok)
    any_data = ok.any()
    sources = {
        name: {variants[v]: entries[v, name] for v in range(len(variants))}
        for name in names
        if any_data
    }
    order = {r.image_id: i for i, r in enumerate(records)}
    return Activations(
        model=model_name,
        image_ids=ids,
        labels=labels,
        variants=variants,
        values=LayerValues(sources, variants, None if keep.size == len(records) else keep),
        texts={name: [t[i] for i in keep] for name, t in texts.items()},
        skipped=dict(sorted(skipped.items(), key=lambda kv: order.get(kv[0], 0))),
    )
