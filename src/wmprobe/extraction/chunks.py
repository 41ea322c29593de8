"""One chunk of images through the model: every requested variant and layer of it.

The unit of work of every engine (:mod:`wmprobe.extraction.engines`) is a :class:`ChunkTask`, the
rows of one cache chunk; :class:`ChunkRunner` turns tasks into :class:`ChunkResult` s (values per
variant and layer, which rows were read, the texts drawn). A task's result depends on the task
alone, so a retried or duplicated task gives the same bytes.

Fixed batch composition: a frame's activation must not depend on which other frames share its
forward pass (convolution and matrix kernels pick their blocking by batch shape, so the same frame
in batches of other shapes differs in the last bits). Each forward pass therefore holds one
variant of a fixed run of images: rows ``[b, b + batch_size)`` of the chunk, cut at the chunk's
end, whatever else is computed or cached; an unreadable image keeps its place as a black frame
(its values are dropped). The null scenario, which draws nothing, thus gives values identical to
the clean ones, and AUC exactly 0.5, however the cache was filled. The batch size is part of the
cache key for that reason.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate, get_worker_info

from wmprobe.errors import ImageChangedError, WmprobeError
from wmprobe.extraction._cpu import inference_scope
from wmprobe.extraction.engines.base import Job, WorkerResources
from wmprobe.extraction.file_hashes import UNREADABLE
from wmprobe.models import LayerTaps, LoadedModel, ModelSpec
from wmprobe.models.layers import Layer
from wmprobe.models.loaded import load_spec
from wmprobe.probes.images import ImageRecord, jpeg_roundtrip, load_frame
from wmprobe.probes.scenario import Scenario


@dataclass(frozen=True)
class ExtractionPlan:
    """What every chunk of one extraction shares: probes, layers and the batch layout.

    Variant 0 is the clean frame, variant ``s + 1`` is ``scenarios[s]``.
    """

    scenarios: tuple[Scenario, ...]
    layers: tuple[Layer, ...]
    seed: int
    reduction: str
    jpeg_quality: int | None
    batch_size: int
    chunk_size: int


@dataclass(frozen=True)
class ChunkTask:
    """Chunk ``chunk`` (rows ``start:start + len(records)``): the variants and the (variant,
    layer) pairs it must produce."""

    chunk: int
    start: int
    records: tuple[ImageRecord, ...]
    variants: tuple[int, ...]
    needed: frozenset[tuple[int, str]]
    # sha1 of each image's bytes, as in the cache key (None: not checked)
    digests: tuple[str | None, ...] | None = None

    @property
    def rows(self) -> int:
        return len(self.records)

    def __len__(self) -> int:  # a progress bar's weight: images
        return len(self.records)

    def batches(self, batch_size: int) -> list[tuple[int, int]]:
        """Row ranges ``(b0, b1)`` of the chunk's forward passes (fixed by the chunk alone)."""
        return [(b, min(b + batch_size, self.rows)) for b in range(0, self.rows, batch_size)]


@dataclass
class ChunkResult:
    """What a task produced: ``values[(variant, layer)]`` ``[rows, units]`` float32 (only the
    needed pairs; none when no image of the chunk could be read), per-row ``ok``, ``errors`` (row
    -> reason) and ``texts`` (variant -> text per row)."""

    chunk: int
    start: int
    rows: int
    values: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    ok: np.ndarray | None = None
    errors: dict[int, str] = field(default_factory=dict)
    texts: dict[int, list[str]] = field(default_factory=dict)
    frames: int = 0


def plan_tasks(
    records: Sequence[ImageRecord],
    chunk_size: int,
    n_variants: int,
    layer_names: Sequence[str],
    done: dict[tuple[int, str], set[int]] | None,
    digests: Sequence[str] | None = None,
) -> list[ChunkTask]:
    """The chunks still to compute; ``done[(variant, layer)]`` holds the chunks a cache has.

    ``digests``: the sha1 of each image file (the cache key's); a worker then decodes only bytes
    with that sha1 (``unreadable:`` entries are not checked: the image is a counted skip anyway).
    """
    out = []
    everything = frozenset((v, name) for v in range(n_variants) for name in layer_names)
    for chunk in range(-(-len(records) // chunk_size)):
        start = chunk * chunk_size
        if done is None:
            needed = everything
        else:
            needed = frozenset(key for key, chunks in done.items() if chunk not in chunks)
        if needed:
            rows = tuple(records[start : start + chunk_size])
            variants = tuple(sorted({v for v, _ in needed}))
            sha1 = None
            if digests is not None:  # an unreadable file is a counted skip: nothing to check
                sha1 = tuple(
                    None if d.startswith(UNREADABLE) else d
                    for d in digests[start : start + chunk_size]
                )
            out.append(ChunkTask(chunk, start, rows, variants, needed, sha1))
    return out


class _ProbeDataset(Dataset):
    """Item ``(task, row)``: the frames of that image for the task's variants (0: clean, s+1:
    scenario s) as uint8 ``[k, H, W, 3]``, and the texts drawn."""

    def __init__(self, tasks: Sequence[ChunkTask], plan: ExtractionPlan):
        self.tasks = list(tasks)
        self.plan = plan

    def __len__(self) -> int:
        return sum(t.rows for t in self.tasks)

    def __getitem__(self, item: tuple[int, int]) -> dict:
        t, row = item
        task = self.tasks[t]
        record = task.records[row]
        plan = self.plan
        sha1 = task.digests[row] if task.digests is not None else None
        try:
            frame = load_frame(record.path, sha1=sha1)
        except ImageChangedError as exc:  # raised again, cleanly, in the main process
            return {"row": row, "fatal": exc}
        except Exception as exc:  # noqa: BLE001 - any unreadable image is a counted skip
            return {"row": row, "k": len(task.variants), "error": f"{type(exc).__name__}: {exc}"}
        frames, texts = [], []
        for v in task.variants:
            if v == 0:
                frames.append(frame)
                continue
            scenario = plan.scenarios[v - 1]
            try:
                drawn = scenario.draw(frame, seed=plan.seed, image_id=record.image_id)
            except WmprobeError as exc:  # raised again, cleanly, in the main process
                return {"row": row, "fatal": exc}
            frames.append(drawn.image)
            texts.append(drawn.text)
        if plan.jpeg_quality is not None:  # both sides alike, probes after drawing
            frames = [jpeg_roundtrip(f, plan.jpeg_quality) for f in frames]
        pixels = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])
        return {"row": row, "pixels": pixels, "texts": texts}


def _collate(items: list[dict]) -> dict:
    """One batch: a uint8 tensor ``[B, k, H, W, 3]`` (shared memory in a worker); an unreadable
    image keeps its place as a black frame, so the batch's shape never depends on what was read."""
    fatal = next((it["fatal"] for it in items if "fatal" in it), None)
    batch = {
        "rows": [it["row"] for it in items],
        "ok": [("pixels" in it) for it in items],
        "texts": [it.get("texts") for it in items],
        "errors": {it["row"]: it["error"] for it in items if "error" in it},
        "fatal": fatal,
    }
    if fatal is None and any(batch["ok"]):
        shape = next(it["pixels"].shape for it in items if "pixels" in it)
        arrays = [it.get("pixels", np.zeros(shape, dtype=np.uint8)) for it in items]
        tensors = [torch.from_numpy(a) for a in arrays]
        if get_worker_info() is None:
            batch["pixels"] = torch.stack(tensors)
        else:
            batch["pixels"] = default_collate(tensors)  # stacks straight into shared memory
    return batch


def as_frames(pixels: torch.Tensor) -> torch.Tensor:
    """``[B, H, W, 3]`` uint8 -> ``[B, 3, H, W]``, a channels-last view (no copy)."""
    return pixels.permute(0, 3, 1, 2)


def default_workers() -> int:
    """DataLoader workers: half the CPUs (drawing is light next to the forward pass), at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


class _Collector:
    """The rows of one task as its batches come in."""

    def __init__(self, task: ChunkTask):
        self.task = task
        self.result = ChunkResult(task.chunk, task.start, task.rows)
        self.result.ok = np.zeros(task.rows, dtype=bool)
        self.result.texts = {v: [""] * task.rows for v in task.variants if v > 0}

    def put(self, batch: dict, outputs: dict[tuple[int, str], np.ndarray]) -> None:
        rows = np.asarray(batch["rows"])
        ok = np.asarray(batch["ok"], dtype=bool)
        result = self.result
        result.errors.update(batch["errors"])
        if not ok.any():
            return
        for key, arr in outputs.items():  # arr: [B, units]
            if key not in self.task.needed:
                continue
            if key not in result.values:
                result.values[key] = np.zeros((self.task.rows, arr.shape[-1]), dtype=np.float32)
            result.values[key][rows[ok]] = arr[ok]
        result.ok[rows[ok]] = True
        scenario_variants = [v for v in self.task.variants if v > 0]
        for r, good, drawn in zip(rows, ok, batch["texts"], strict=True):
            if good:
                for v, text in zip(scenario_variants, drawn, strict=True):
                    result.texts[v][r] = text


class ChunkRunner:
    """Computes chunk tasks with one model: its hooks, threads and memory settings stay in place
    while :meth:`run` goes through the tasks.

    ``num_workers``: DataLoader workers that read and draw while the model runs (0: inline).
    ``threads``: torch intra-op threads during the pass (None: as set); restored after.
    """

    def __init__(
        self,
        model: LoadedModel,
        plan: ExtractionPlan,
        *,
        num_workers: int | None = None,
        threads: int | None = None,
    ):
        self.model = model
        self.plan = plan
        self.num_workers = default_workers() if num_workers is None else num_workers
        self.threads = threads

    def run(self, tasks: Sequence[ChunkTask], on_batch=None) -> Iterator[ChunkResult]:
        """Each task's :class:`ChunkResult`, in task order. ``on_batch(n_images)`` after each
        batch (a progress bar)."""
        tasks = list(tasks)
        if not tasks:
            return
        size = self.plan.batch_size
        sampler = [
            [(t, row) for row in range(b0, b1)]
            for t, task in enumerate(tasks)
            for b0, b1 in task.batches(size)
        ]
        loader = DataLoader(
            _ProbeDataset(tasks, self.plan),
            batch_sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=_collate,
            pin_memory=self.model.device.type == "cuda",
        )
        layers = list(self.plan.layers)
        batches = iter(loader)
        with (
            inference_scope(self.threads) as memory,
            LayerTaps(self.model, layers, self.plan.reduction) as taps,
        ):
            for task in tasks:
                collector = _Collector(task)
                for _ in task.batches(size):
                    batch = next(batches)
                    if batch["fatal"] is not None:
                        raise batch["fatal"]
                    outputs: dict[tuple[int, str], np.ndarray] = {}
                    if "pixels" in batch:
                        with torch.inference_mode():
                            for j, v in enumerate(task.variants):  # one variant per pass
                                for name, arr in _forward(self.model, taps, batch["pixels"][:, j]):
                                    outputs[v, name] = arr
                        collector.result.frames += len(batch["rows"]) * len(task.variants)
                        memory.step()
                    collector.put(batch, outputs)
                    if on_batch is not None:
                        on_batch(len(batch["rows"]))
                yield collector.result


def _forward(model: LoadedModel, taps: LayerTaps, pixels: torch.Tensor):
    """One variant's frames ``[B, H, W, 3]`` through the model: ``(layer, [B, units])`` pairs."""
    x = model.preprocess(as_frames(pixels))
    amp = model.autocast_dtype  # (in the cache key: CPU and GPU runs never share entries)
    with torch.autocast(model.device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
        out = taps.run(x)
    return [(name, t.cpu().numpy().reshape(pixels.shape[0], -1)) for name, t in out.items()]


@dataclass(frozen=True)
class ModelRecipe:
    """How a worker process builds the driver's model: the spec, pretrained or not, the checksum
    its weights must have (a worker with other weights stops with an error) and the device type
    (the driver's, which the cache key holds)."""

    spec: ModelSpec
    pretrained: bool
    weights: str
    device: str = "cpu"
    code: str | None = None

    @classmethod
    def of(cls, model: LoadedModel) -> ModelRecipe:
        """The recipe of the driver's loaded ``model``."""
        return cls(
            model.spec, model.pretrained, model.weights_hash(), model.device.type, model.code_hash()
        )


def load_recipe(recipe: ModelRecipe, resources: WorkerResources) -> LoadedModel:
    """The model of ``recipe`` loaded on a worker, refused unless its device, weights and code
    are the driver's."""
    if recipe.device != resources.device:
        raise WmprobeError(
            f"A {resources.device} worker got a {recipe.device} job; use one device per run."
        )
    model = load_spec(recipe.spec, pretrained=recipe.pretrained, device=recipe.device)
    if model.weights_hash() != recipe.weights:
        raise WmprobeError(
            f"A worker built {recipe.spec.name} with other weights (checksum "
            f"{model.weights_hash()[:12]}, the driver has {recipe.weights[:12]}); install the "
            "same packages and weight files on every node."
        )
    if recipe.code is not None and model.code_hash() != recipe.code:
        raise WmprobeError(
            f"A worker's code for {recipe.spec.name} differs from the driver's (checksum "
            f"{model.code_hash()[:12]}, the driver has {recipe.code[:12]}); install the same "
            "wmprobe, model packages and torch/torchvision/timm versions on every node."
        )
    return model


def _run_chunks(
    plan: ExtractionPlan, model: LoadedModel, tasks: Sequence[ChunkTask], resources
) -> Iterator[ChunkResult]:
    runner = ChunkRunner(model, plan, num_workers=resources.loader_workers, threads=resources.cpus)
    return runner.run(tasks)


def extraction_job(model: LoadedModel, plan: ExtractionPlan, *, remote: bool) -> Job:
    """The :class:`~wmprobe.extraction.engines.base.Job` that computes ``plan``'s chunks with
    ``model``: the model itself here, or rebuilt from its spec once per remote worker."""
    if remote:
        setup = functools.partial(load_recipe, ModelRecipe.of(model))
    else:
        setup = functools.partial(_return, model)
    return Job(
        key=f"{model.name}:{model.weights_hash()}",
        setup=setup,
        run=functools.partial(_run_chunks, plan),
        gpu=model.device.type == "cuda",
    )


def _return(value, _resources):
    return value
