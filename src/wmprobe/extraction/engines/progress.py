"""A progress bar over chunks, shared by the engines (tasks weigh their ``len``: images)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm


def task_weight(task: Any) -> int:
    """How much a task counts on the bar: its ``len`` (images of a chunk) when it has one."""
    try:
        return len(task)
    except TypeError:
        return 1


class ChunkProgress:
    """``done(job, task)`` advances the bar by that task's weight; the postfix counts chunks."""

    def __init__(self, work: Sequence[tuple[Any, Sequence[Any]]], *, progress: bool, desc: str):
        self._weights = [[task_weight(t) for t in tasks] for _, tasks in work]
        self._total = sum(len(w) for w in self._weights)
        self._chunks = 0
        self._bar = tqdm(
            total=sum(sum(w) for w in self._weights),
            desc=desc or "chunks",
            unit="img",
            disable=not progress or self._total == 0,
        )

    def done(self, job: int, task: int) -> None:
        self._chunks += 1
        self._bar.update(self._weights[job][task])
        self._bar.set_postfix_str(f"chunks {self._chunks}/{self._total}", refresh=False)

    def __enter__(self) -> ChunkProgress:
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()
