"""The inference scope: threads and heap settings for a loop of forward passes, restored after;
an inner scope (a task inside a worker's life-long scope) changes only the threads."""

from __future__ import annotations

import torch

from wmprobe.extraction import _cpu
from wmprobe.extraction._cpu import inference_scope


class _FakeLibc:
    """Records mallopt and malloc_trim calls instead of changing this process's heap."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def mallopt(self, option: int, value: int) -> int:
        self.calls.append(("mallopt", option, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("trim", pad))
        return 1


def test_an_inner_scope_shares_the_outer_one_and_trims_nothing(monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(_cpu, "_libc", lambda: libc)
    before = torch.get_num_threads()
    with inference_scope(1) as outer:
        assert torch.get_num_threads() == 1
        entered = len(libc.calls)
        assert ("mallopt", _cpu._M_MMAP_THRESHOLD, _cpu._KEEP) in libc.calls
        for _ in range(3):  # one task after the other, as in a Ray actor
            with inference_scope(2) as inner:
                assert inner is outer
                assert torch.get_num_threads() == 2
            assert torch.get_num_threads() == 1  # the outer's threads again
        assert libc.calls[entered:] == []  # no heap settings changed, nothing trimmed
    assert libc.calls[-1] == ("trim", 0)  # the outermost scope trims on its way out
    assert torch.get_num_threads() == before
    assert _cpu._ACTIVE == []


def test_a_ray_worker_holds_one_scope_with_its_cpus_as_threads(monkeypatch):
    ray_engine = __import__("wmprobe.extraction.engines.ray", fromlist=["_Worker"])
    from wmprobe.extraction.engines.base import WorkerResources

    monkeypatch.setattr(_cpu, "_libc", lambda: _FakeLibc())
    before = torch.get_num_threads()
    worker = ray_engine._Worker(WorkerResources(cpus=1))
    try:
        assert torch.get_num_threads() == 1
        assert len(_cpu._ACTIVE) == 1
    finally:
        worker._scope.close()
    assert torch.get_num_threads() == before and _cpu._ACTIVE == []
