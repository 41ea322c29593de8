"""The local engine: every task in this process, one job after the other (the default)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from wmprobe.extraction.engines.base import Engine, Job, WorkerResources
from wmprobe.extraction.engines.progress import ChunkProgress


class LocalEngine(Engine):
    """Runs tasks here, in order. ``threads``: torch intra-op threads (None: as set);
    ``loader_workers``: processes that read and draw images (None: half the CPUs)."""

    name = "local"
    remote = False

    def __init__(self, *, threads: int | None = None, loader_workers: int | None = None):
        self.resources = WorkerResources(cpus=threads, loader_workers=loader_workers)

    def map_jobs(
        self, work: Sequence[tuple[Job, Sequence[Any]]], *, progress: bool = False, desc: str = ""
    ) -> Iterator[tuple[int, int, Any]]:
        with ChunkProgress(work, progress=progress, desc=desc) as bar:
            for j, (job, tasks) in enumerate(work):
                if not tasks:
                    continue
                state = job.setup(self.resources)
                for i, result in enumerate(job.run(state, list(tasks), self.resources)):
                    bar.done(j, i)
                    yield j, i, result
