"""The interface every engine has: run chunk tasks of one or more jobs, hand back their results.

A :class:`Job` says how a worker gets ready (``setup``, once per worker: load a model) and how it
turns tasks into results (``run``, in task order). An engine decides where that happens: in this
process (:mod:`~wmprobe.extraction.engines.local`) or on a Ray cluster
(:mod:`~wmprobe.extraction.engines.ray`). Results come back tagged with their task's index, in
whatever order they finish; callers assemble them by that index, never by arrival.

Example (any chunked work, e.g. scanning images):
    >>> job = Job(key="sizes", setup=lambda res: None,
    ...           run=lambda state, tasks, res: (len(t) for t in tasks))
    >>> engine = LocalEngine()  # doctest: +SKIP
    >>> sorted(engine.map_chunks(job, [[1, 2], [3]]))  # doctest: +SKIP
    [(0, 2), (1, 1)]
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WorkerResources:
    """What a worker was given: ``cpus`` (torch threads are set to it), ``gpus`` and the torch
    ``device`` its models run on; ``loader_workers``: processes that read images beside it."""

    cpus: int | None
    gpus: float = 0.0
    device: str = "cpu"
    loader_workers: int | None = None


@dataclass(frozen=True)
class Job:
    """Chunked work of one kind.

    ``key`` names the state ``setup`` builds (a worker that holds it reuses it); ``setup(resources)
    -> state`` runs once per worker; ``run(state, tasks, resources) -> iterable`` yields one result
    per task, in task order; ``gpu``: run on workers with a GPU each (else on CPU workers). With
    the Ray engine ``setup`` and ``run`` travel to the workers by pickle (cloudpickle), so they
    must not hold live models or open files.
    """

    key: str
    setup: Callable[[WorkerResources], Any]
    run: Callable[[Any, Sequence[Any], WorkerResources], Iterable[Any]]
    gpu: bool = False


class Engine(abc.ABC):
    """Runs the tasks of jobs; ``remote`` engines run them in other processes or machines."""

    name: str = "engine"
    remote: bool = False

    @abc.abstractmethod
    def map_jobs(
        self, work: Sequence[tuple[Job, Sequence[Any]]], *, progress: bool = False, desc: str = ""
    ) -> Iterator[tuple[int, int, Any]]:
        """``(job index, task index, result)`` for every task of every ``(job, tasks)`` pair,
        as they finish."""

    def map_chunks(
        self, job: Job, tasks: Sequence[Any], *, progress: bool = False, desc: str = ""
    ) -> Iterator[tuple[int, Any]]:
        """``(task index, result)`` for every task of one job, as they finish."""
        for _, index, result in self.map_jobs([(job, tasks)], progress=progress, desc=desc):
            yield index, result

    def close(self) -> None:
        """Release what the engine started (workers, a Ray instance)."""
        return None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
