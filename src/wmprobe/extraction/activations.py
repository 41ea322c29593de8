"""Activations of a model on clean frames and their probes: planned per cache chunk, computed by
an engine, assembled by chunk id.

:class:`ExtractionRequest` plans one model's extraction: with a cache
(:mod:`wmprobe.extraction.cache`) each (variant, layer) is an entry of its own (the clean entry is
shared by every scenario), and only the chunks that some entry lacks become tasks.
:func:`run_requests` hands the tasks to an engine (:mod:`wmprobe.extraction.engines`: here, or a
Ray cluster), which computes each chunk with :mod:`wmprobe.extraction.chunks` (every requested
layer in the same forward passes), and stores each result under its chunk id as it arrives; a
killed run resumes where it stopped. :class:`Activations` is what callers read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wmprobe.constants import CLEAN, DEFAULT_LAYERS
from wmprobe.errors import ImageFolderError, InvalidArgumentError, LayerError
from wmprobe.extraction.cache import (
    DEFAULT_CHUNK,
    DTYPES,
    ActivationCache,
    CacheEntry,
    EntryKey,
    images_digest,
    prepare,
    release,
)
from wmprobe.extraction.chunks import (
    ChunkResult,
    ChunkTask,
    ExtractionPlan,
    default_workers,
    extraction_job,
    plan_tasks,
)
from wmprobe.extraction.engines.base import Engine
from wmprobe.extraction.engines.local import LocalEngine
from wmprobe.models import REDUCTIONS, LoadedModel, resolve_layers
from wmprobe.probes.images import FRAME_SIZE, ImageRecord, check_jpeg_quality
from wmprobe.probes.scenario import Scenario

__all__ = [
    "CLEAN",
    "Activations",
    "ExtractionRequest",
    "LayerValues",
    "default_workers",
    "extract",
    "require_readable",
    "run_requests",
]


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


class _MemorySink:
    """Without a cache: every (variant, layer) in memory."""

    def __init__(self, n: int, layers: Sequence[str], n_variants: int):
        self.n, self.layers, self.n_variants = n, list(layers), n_variants
        self.arrays: dict[tuple[int, str], np.ndarray] = {}
        self.ok = np.zeros(n, dtype=bool)
        self.errors: dict[int, str] = {}
        self.texts: dict[int, list[str]] = {v: [""] * n for v in range(1, n_variants)}

    def write(self, result: ChunkResult) -> None:
        sl = slice(result.start, result.start + result.rows)
        for (v, name), values in result.values.items():
            if (v, name) not in self.arrays:
                self.arrays[v, name] = np.zeros((self.n, values.shape[1]), dtype=np.float32)
            self.arrays[v, name][sl] = values
        self.ok[sl] = result.ok
        self.errors.update({result.start + r: why for r, why in result.errors.items()})
        for v, texts in result.texts.items():
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
    engine: Engine | None = None,
) -> Activations:
    """Run ``model`` once over every image and its probes; all requested layers in one pass.

    Args:
        layers: ``logits``, ``features``, ``blocks`` or module paths (see ``wmprobe layers``).
        batch_size: images per forward pass (one variant at a time; in the cache key, since a
            frame's last bits depend on the batch it was computed in).
        cache: an :class:`~wmprobe.extraction.cache.ActivationCache` or its folder; None: in
            memory only.
        reduction: ``mean`` or ``max`` over space (conv maps) or tokens (transformers).
        dtype: ``float32`` or ``float16``, as stored in the cache.
        jpeg_quality: JPEG-encode the clean frame and each probe after drawing (in the cache key).
        threads, num_workers: torch intra-op threads (None: as set; restored after) and image
            reading processes of the default local engine.
        engine: where the chunks are computed (:func:`~wmprobe.extraction.engines.get_engine`);
            None: here, with ``threads`` and ``num_workers``.

    Images that cannot be read are skipped and listed in ``Activations.skipped`` with the reason.
    With ``jpeg_quality`` the clean frame and every probe (after drawing) are JPEG-encoded at that
    quality and decoded, both sides alike.
    """
    request = ExtractionRequest(
        model,
        records,
        scenarios,
        seed=seed,
        layers=layers,
        batch_size=batch_size,
        cache=cache,
        reduction=reduction,
        dtype=dtype,
        jpeg_quality=jpeg_quality,
    )
    engine = engine or LocalEngine(threads=threads, loader_workers=num_workers)
    run_requests([request], engine, progress=progress)
    return request.activations()


class ExtractionRequest:
    """One model's extraction, planned: its cache entries and the chunks still to compute.

    :func:`run_requests` computes the chunks of several requests at once (models spread over an
    engine's workers); :meth:`activations` reads the result.
    """

    def __init__(
        self,
        model: LoadedModel,
        records: Sequence[ImageRecord],
        scenarios: Sequence[Scenario],
        *,
        seed: int = 0,
        layers: Sequence[str] = DEFAULT_LAYERS,
        batch_size: int = 16,
        cache: ActivationCache | str | Path | None = None,
        reduction: str = "mean",
        dtype: str = "float32",
        jpeg_quality: int | None = None,
    ):
        scenarios = list(scenarios)
        _check_arguments(scenarios, reduction, dtype, jpeg_quality, batch_size)
        layer_list = resolve_layers(model, layers)
        self.model = model
        self.names = [layer.name for layer in layer_list]
        self.variants = (CLEAN, *(s.name for s in scenarios))
        self.records = list(records)
        if isinstance(cache, str | Path):
            cache = ActivationCache(cache)
        self.cache = cache
        self.entries: dict[tuple[int, str], CacheEntry] = {}
        #: sha1 of each image file (the cache key's), which the workers check what they read against
        self.digests: list[str] | None = None
        if cache is not None:
            self.digests = cache.file_hashes([r.path for r in self.records])
            self.entries = _entries(
                cache,
                model,
                self.records,
                self.digests,
                scenarios,
                self.names,
                self.variants,
                seed=seed,
                reduction=reduction,
                dtype=dtype,
                jpeg_quality=jpeg_quality,
                batch_size=batch_size,
            )
        self.plan = ExtractionPlan(
            scenarios=tuple(scenarios),
            layers=tuple(layer_list),
            seed=seed,
            reduction=reduction,
            jpeg_quality=jpeg_quality,
            batch_size=batch_size,
            chunk_size=cache.chunk_size if cache is not None else DEFAULT_CHUNK,
        )
        self.sink = _MemorySink(len(self.records), self.names, len(self.variants))
        self.tasks: list[ChunkTask] = []
        self.frames_computed = 0

    def open_entries(self) -> list[CacheEntry]:
        """The entries this run writes and the tasks still to do (once
        :func:`~wmprobe.extraction.cache.prepare` has locked them and made them ready)."""
        todo = [e for e in self.entries.values() if not e.is_complete()]
        done = {k: e.done_chunks() for k, e in self.entries.items()} if self.cache else None
        self.tasks = plan_tasks(
            self.records, self.plan.chunk_size, len(self.variants), self.names, done, self.digests
        )
        return todo

    def write(self, task: ChunkTask, result: ChunkResult) -> None:
        """Store one finished chunk (into the cache entries, or memory without a cache)."""
        self.frames_computed += result.frames
        if not self.entries:
            self.sink.write(result)
            return
        records = self.records
        errors = {records[result.start + r].image_id: why for r, why in result.errors.items()}
        for v, name in sorted(task.needed):
            values = result.values.get((v, name)) if result.ok.any() else None
            texts = result.texts.get(v)
            self.entries[v, name].write_chunk(result.chunk, values, result.ok, errors, texts)

    def finish(self) -> None:
        for entry in self.entries.values():
            entry.finish()

    def activations(self) -> Activations:
        """The result (read from the cache entries, or from memory)."""
        if self.cache is not None:
            acts = _from_entries(
                self.model.name, self.records, self.variants, self.names, self.entries
            )
        else:
            acts = _from_memory(self.model.name, self.records, self.variants, self.names, self.sink)
        acts.frames_computed = self.frames_computed
        return acts


def run_requests(
    requests: Sequence[ExtractionRequest], engine: Engine, *, progress: bool = True
) -> None:
    """Compute every missing chunk of ``requests`` on ``engine`` and store each as it arrives.

    The cache entries are locked for the run; results are stored by chunk id, so any arrival order
    gives the same entries. A run stopped half-way (Ctrl-C, a kill) leaves whole chunks that the
    next run keeps.
    """
    entries = [e for r in requests for e in r.entries.values()]
    locks = prepare(entries, announce=progress)  # damaged entries start over
    try:
        for request in requests:
            request.open_entries()
        work = [(extraction_job(r.model, r.plan, remote=engine.remote), r.tasks) for r in requests]
        names = sorted({r.model.name for r in requests})
        desc = names[0] if len(names) == 1 else f"{len(names)} models"
        for j, i, result in engine.map_jobs(work, progress=progress, desc=desc):
            requests[j].write(requests[j].tasks[i], result)
        for request in requests:
            request.finish()
    finally:
        release(locks)


def _entries(
    cache,
    model,
    records,
    digests,
    scenarios,
    names,
    variants,
    *,
    seed,
    reduction,
    dtype,
    jpeg_quality,
    batch_size,
) -> dict[tuple[int, str], CacheEntry]:
    images = images_digest([r.image_id for r in records], digests)
    weights, code = model.weights_hash(), model.code_hash()
    autocast = model.autocast_dtype
    out = {}
    for v, variant in enumerate(variants):
        artifact = None if v == 0 else scenarios[v - 1].spec_hash()
        for name in names:
            key = EntryKey(
                model=model.name,
                weights=weights,
                code=code,
                device=model.device.type,
                autocast=None if autocast is None else str(autocast).removeprefix("torch."),
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
                batch_size=batch_size,
            )
            out[v, name] = cache.entry(key)
    return out


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
