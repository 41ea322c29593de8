"""Process settings for a long inference loop on the CPU, set in a scope and restored on exit.

glibc returns every large block (> 128 KiB, up to 32 MiB dynamically) to the kernel when it is
freed and asks for it again on the next batch, so each batch of a CNN pays page faults for its
feature maps: on a 2-core machine this cost more system time than the model's own compute
(efficientnet_lite0: ~30 ms of system time per frame, see bench/extract.py). Inside
:func:`inference_scope` freed memory stays in the heap and is reused by the next batch; on exit the
defaults are put back and the heap is trimmed. Set ``WMPROBE_MALLOC_TUNING=0`` to leave malloc
alone. Elsewhere than glibc this does nothing.

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

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_DEFAULT_THRESHOLD = 128 * 1024  # glibc's default for both
_KEEP = 1 << 30  # blocks up to 1 GiB come from the heap, not from mmap
_NO_TRIM = -1  # free memory at the top of the heap stays there while in the scope


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


@contextlib.contextmanager
def inference_scope(threads: int | None = None) -> Iterator[None]:
    """Keep freed memory for reuse (glibc) and use ``threads`` intra-op threads, then restore."""
    libc = _libc()
    previous_threads = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"Expected argument `threads` to be >= 1 but got {threads}")
        torch.set_num_threads(threads)
    tuned = bool(libc) and libc.mallopt(_M_MMAP_THRESHOLD, _KEEP) == 1
    if tuned:
        libc.mallopt(_M_TRIM_THRESHOLD, _NO_TRIM)
    freeze = gc.get_freeze_count() == 0  # someone else's freeze is left as it is
    if freeze:
        gc.freeze()
    try:
        yield
    finally:
        if freeze:
            gc.unfreeze()
        if tuned:
            libc.mallopt(_M_MMAP_THRESHOLD, _DEFAULT_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_THRESHOLD)
            libc.malloc_trim(0)
        if threads is not None:
            torch.set_num_threads(previous_threads)
