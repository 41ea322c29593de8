"""Process settings for a long inference loop on the CPU, set in a scope and restored on exit.

glibc returns every large block (> 128 KiB, up to 32 MiB dynamically) to the kernel when it is
freed and asks for it again on the next batch, so each batch of a CNN pays page faults for its
feature maps. Measured here (2 cores): efficientnet_lite0 on 80 frames took 2.6 s with 3.0 s of
system time and 1.7 million page faults per batch, and 1.0 s with none once freed memory stayed
in the heap. Inside :func:`inference_scope` it does: big blocks come from the heap and the heap is
not trimmed after each free. Kept blocks can fragment the heap, so :meth:`InferenceScope.step`
(after each batch) trims it whenever the process holds more than ``TRIM_BUDGET`` of anonymous
memory above what it held after the first batches; without that guard a 5,000-image audit of a
tiny model grew to 3 GiB of free heap. On exit the defaults are put back and the heap is trimmed.
Set ``WMPROBE_MALLOC_TUNING=0`` to leave malloc alone. Elsewhere than glibc this does nothing.

The objects alive on entry (modules, the model) are also frozen out of Python's garbage collector
for the scope (``gc.freeze``): each forward pass makes many short-lived objects, and full
collections over every imported object took ~7% of a forward pass of efficientnet_lite0 here.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import os
from collections.abc import Iterator

import torch

from wmprobe.errors import InvalidArgumentError

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_DEFAULT_THRESHOLD = 128 * 1024  # glibc's default for both
_KEEP = 1 << 30  # blocks up to 1 GiB come from the heap, not from mmap
_NO_TRIM = -1  # free memory at the top of the heap stays there while in the scope
#: Anonymous memory allowed above the level after the first batches before the heap is trimmed.
TRIM_BUDGET = 512 << 20
_WARMUP_STEPS = 2
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@functools.lru_cache(maxsize=1)
def _libc():
    if os.environ.get("WMPROBE_MALLOC_TUNING", "1") == "0":
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 - glibc only
        libc.malloc_trim  # noqa: B018
        libc.gnu_get_libc_version  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def _anonymous_bytes() -> int:
    """Resident memory that is neither file-backed nor shared (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        fields = f.read().split()
    return (int(fields[1]) - int(fields[2])) * _PAGE


class InferenceScope:
    """What :func:`inference_scope` yields: call :meth:`step` after each batch."""

    def __init__(self, libc) -> None:
        self._libc = libc
        self._steps = 0
        self._base = 0
        self.trims = 0

    def step(self) -> None:
        """Trim the heap when it holds more than ``TRIM_BUDGET`` above its early level."""
        if self._libc is None:
            return
        self._steps += 1
        held = _anonymous_bytes()
        if self._steps <= _WARMUP_STEPS:
            self._base = max(self._base, held)
        elif held > self._base + TRIM_BUDGET:
            self._libc.malloc_trim(0)
            self.trims += 1


#: The scope this process is in, if any (an inner scope shares it; see :func:`inference_scope`).
_ACTIVE: list[InferenceScope] = []


@contextlib.contextmanager
def inference_scope(threads: int | None = None) -> Iterator[InferenceScope]:
    """Keep freed memory for reuse (glibc) and use ``threads`` intra-op threads, then restore.

    Inside another scope only the threads change: the outer scope's heap settings, its trim
    budget and its garbage-collector freeze stay, and nothing is trimmed on the way out (a worker
    that holds one scope for its life pays no page faults again at each task).
    """
    previous_threads = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise InvalidArgumentError(f"Expected argument `threads` to be >= 1 but got {threads}")
        torch.set_num_threads(threads)
    if _ACTIVE:
        try:
            yield _ACTIVE[-1]
        finally:
            if threads is not None:
                torch.set_num_threads(previous_threads)
        return
    libc = _libc()
    if libc is not None and not os.path.exists("/proc/self/statm"):
        libc = None
    tuned = libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, _KEEP) == 1
    if tuned:
        libc.mallopt(_M_TRIM_THRESHOLD, _NO_TRIM)
    freeze = gc.get_freeze_count() == 0  # someone else's freeze is left as it is
    if freeze:
        gc.freeze()
    _ACTIVE.append(InferenceScope(libc if tuned else None))
    try:
        yield _ACTIVE[-1]
    finally:
        _ACTIVE.pop()
        if freeze:
            gc.unfreeze()
        if tuned:
            libc.mallopt(_M_MMAP_THRESHOLD, _DEFAULT_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_THRESHOLD)
            libc.malloc_trim(0)
        if threads is not None:
            torch.set_num_threads(previous_threads)
