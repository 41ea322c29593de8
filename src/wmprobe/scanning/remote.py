"""A scan's chunks on a remote engine's workers (``scan --engine ray``).

The driver lists the images, cuts them into the scan's chunks and sends only the chunks its cache
lacks, as lists of paths. Each worker loads the detector and its backbone once (:func:`_setup`)
and scores whole chunks with :func:`~wmprobe.scanning.run.score_paths`, in the batches a local
scan uses, so a chunk's scores depend on the chunk alone. The driver writes each chunk into the
scan's cache as it arrives (atomically, by chunk index, in any order) and assembles the table by
index, so a stopped scan resumes from its cache to the same scores, on either engine.

What the workers need: the images at the same paths as on the driver (tasks carry paths, not
pixels); a detector file at the same path (packaged detectors come with wmprobe; a
:class:`~wmprobe.scanning.detector.Detector` given as an object travels with the job); the
backbone's package and weights. A worker checks that its detector and backbone have the driver's
checksums and stops with an error otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wmprobe.extraction._cpu import inference_scope
from wmprobe.extraction.chunks import ModelRecipe, load_recipe
from wmprobe.extraction.engines.base import Engine, Job, WorkerResources
from wmprobe.scanning.backbone import FeatureTap
from wmprobe.scanning.detector import PACKAGED_NAMES, Detector, DetectorError, load_detector
from wmprobe.scanning.run import _cached_chunk, _chunks, _save_chunk, score_paths


@dataclass(frozen=True)
class ScanRecipe:
    """What a worker needs to score chunks as the driver would: the detector (a packaged name, an
    absolute file path, or the detector itself), its sha256, the backbone and the batch size."""

    detector: str | Detector
    digest: str
    model: ModelRecipe
    layer: str
    batch_size: int


def detector_source(detector: str | Path | Detector | None, loaded: Detector) -> str | Detector:
    """How workers get the driver's detector: a packaged name, an absolute path, or the object."""
    if isinstance(detector, Detector):
        return dataclasses.replace(loaded, _head=None)  # weights and calibration, no module
    name = "default" if detector is None else str(detector)
    return name if name in PACKAGED_NAMES else str(Path(name).expanduser().resolve())


def _setup(recipe: ScanRecipe, resources: WorkerResources) -> tuple[Detector, FeatureTap]:
    if isinstance(recipe.detector, Detector):
        det = recipe.detector
    else:
        try:
            det = load_detector(recipe.detector)
        except DetectorError as exc:
            raise DetectorError(
                f"A scan worker cannot load the detector: {exc} Put the file at the same path on "
                "every node (or on storage that every node mounts)."
            ) from exc
    if det.digest() != recipe.digest:
        raise DetectorError(
            f"A scan worker loaded another detector from {recipe.detector!r} (sha256 "
            f"{det.digest()[:12]}, the driver's is {recipe.digest[:12]}); install the same "
            "wmprobe and detector file on every node."
        )
    return det, FeatureTap(load_recipe(recipe.model, resources), recipe.layer)


def _run(
    recipe: ScanRecipe,
    state: tuple[Detector, FeatureTap],
    tasks: Sequence[list[str]],
    resources: WorkerResources,
) -> Iterator[tuple[dict[str, np.ndarray], list[tuple[str, str]]]]:
    det, tap = state
    with ThreadPoolExecutor(1) as pool, inference_scope(resources.cpus) as scope:
        for paths in tasks:
            yield score_paths(list(paths), det, tap, batch_size=recipe.batch_size, pool=pool)
            scope.step()


def scan_job(
    det: Detector, detector: str | Path | Detector | None, tap: FeatureTap, batch_size: int
) -> Job:
    """The :class:`~wmprobe.extraction.engines.base.Job` that scores chunks (lists of paths) with
    ``det`` (loaded from ``detector``, the scan's argument) on ``tap``'s layer, both rebuilt once
    per worker."""
    model = tap.model
    recipe = ScanRecipe(
        detector=detector_source(detector, det),
        digest=det.digest(),
        model=ModelRecipe.of(model),
        layer=tap.layer,
        batch_size=batch_size,
    )
    return Job(
        key=f"scan:{recipe.digest}:{recipe.model.weights}:{model.device.type}",
        setup=functools.partial(_setup, recipe),
        run=functools.partial(_run, recipe),
        gpu=model.device.type == "cuda",
    )


def score_on_engine(
    engine: Engine,
    stream: Iterable[str],
    cache: Path,
    job: Job,
    *,
    chunk_size: int,
    progress: bool,
) -> tuple[list[dict[str, np.ndarray]], list[tuple[str, str]], int]:
    """Every chunk of ``stream``: from ``cache``, or scored by ``engine``'s workers and written to
    ``cache`` as it arrives. Returns the chunks' data in chunk order, the unreadable files and the
    number of images scored now."""
    chunks = list(_chunks(stream, chunk_size))
    parts: list[dict[str, np.ndarray] | None] = [None] * len(chunks)
    bad: list[list[tuple[str, str]]] = [[] for _ in chunks]
    todo: list[int] = []
    for index, chunk in enumerate(chunks):
        parts[index], bad[index] = _cached_chunk(cache, index, chunk)
        if parts[index] is None:
            todo.append(index)
    if progress and chunks:
        print(
            f"  {len(chunks) - len(todo)} of {len(chunks)} chunks from the cache; scoring "
            f"{len(todo)} on the {engine.name} engine",
            flush=True,
        )
    computed = 0
    tasks = [chunks[index] for index in todo]
    for i, (data, rows) in engine.map_chunks(job, tasks, progress=progress, desc="scan"):
        index = todo[i]
        _save_chunk(cache, index, chunks[index], data, rows)
        parts[index], bad[index] = data, rows
        computed += len(chunks[index])
    return parts, [row for rows in bad for row in rows], computed  # type: ignore[return-value]
