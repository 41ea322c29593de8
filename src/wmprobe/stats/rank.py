"""Rank engine behind the AUC statistics: one sort per unit, ties handled exactly.

Private helpers of :mod:`wmprobe.stats.core` and :mod:`wmprobe.stats.intervals`. Every value of a
unit
becomes an integer key ``2 * v + label`` (``v`` an order-preserving integer image of the value,
``label`` 0 for clean and 1 for probe). Sorting the keys of a unit puts equal values side by side,
clean ones first. From a sorted row the Mann-Whitney U statistic is the sum of the probe positions
less a correction for clean/probe ties, and DeLong's structural components are cumulative counts.
float32 data (and float64 data that float32 holds exactly) get 32-bit keys when no value is
negative, else 64-bit keys; any other data go through a stable argsort.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from wmprobe.errors import InvalidArgumentError

CHUNK = 256  # most units sorted at a time: a chunk's keys stay in cache between the passes
CHUNK_ELEMENTS = 1 << 19  # fewer units per chunk when there are many images
# threads for large AUC batches (numpy sorts and ufuncs run without the GIL), used while the
# machine leaves at least one of them idle
THREADS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
LOADAVG = "/proc/loadavg"
_POOL = threading.local()  # ``inside`` is set in the threads of :func:`thread_map`

_T = TypeVar("_T")
_R = TypeVar("_R")


def busy_cpus() -> float:
    """CPUs busy now besides this thread: the kernel's count of runnable tasks less this one
    (Linux, ``/proc/loadavg``), else the one-minute load average. The load average lags by a
    minute: right after an extraction it still says every CPU is busy."""
    try:
        with open(LOADAVG) as f:
            running = int(f.read().split()[3].split("/")[0])
        return float(max(0, running - 1))
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.getloadavg()[0]
    except OSError:  # no load average on this platform
        return 0.0


def default_threads() -> int:
    """THREADS, or 1 when the machine is already busy (threads then only wait on each other) or
    when called from a thread of :func:`thread_map` (its pool already holds the CPUs)."""
    if getattr(_POOL, "inside", False):
        return 1
    return THREADS if THREADS - busy_cpus() >= 1.0 else 1


def thread_map(work: Callable[[_T], _R], items: Sequence[_T], threads: int) -> list[_R]:
    """``[work(item) for item in items]`` on up to ``threads`` threads, in item order. Inside
    ``work``, :func:`default_threads` is 1: statistics nested in a pooled job stay serial."""
    if threads <= 1 or len(items) <= 1:
        return [work(item) for item in items]

    def pooled(item: _T) -> _R:
        _POOL.inside = True
        return work(item)

    with ThreadPoolExecutor(min(threads, len(items))) as pool:
        return list(pool.map(pooled, items))


def chunk_units(n_rows: int) -> int:
    """Units per chunk for ``n_rows`` images in all: buffers of about CHUNK_ELEMENTS keys."""
    return max(1, min(CHUNK, CHUNK_ELEMENTS // max(n_rows, 1)))


_SIGN = np.uint32(0x80000000)
_INF32 = np.uint32(0x7F800000)  # bits of float32 +inf: smaller bits are finite, non-negative values


def as_matrix(x: np.ndarray, name: str, check_finite: bool = True) -> np.ndarray:
    """``x`` as a 2-D float32 or float64 array ``[n_rows, n_units]``; 1-D means one unit."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise InvalidArgumentError(
            f"Expected argument `{name}` to be a numeric array but got dtype {arr.dtype}"
        )
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32 if arr.dtype == np.float16 else np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InvalidArgumentError(
            f"Expected argument `{name}` to be a 1-D or 2-D array but got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise InvalidArgumentError(f"Expected argument `{name}` to have at least one row but got 0")
    if check_finite:
        _check_finite(arr, name)
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    if arr.dtype == np.float32 and arr.view(np.uint32).max(initial=0) < _INF32:
        return  # one pass: finite and not negative
    if arr.size and not (np.isfinite(arr.min()) and np.isfinite(arr.max())):
        raise InvalidArgumentError(
            f"Expected argument `{name}` to be finite but it holds NaN or inf"
        )


def as_pair(
    clean: np.ndarray,
    probe: np.ndarray,
    names: tuple[str, str] = ("clean", "probe"),
    check_finite: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate two activation matrices that must share their units (columns).

    With ``check_finite=False`` the caller must check (``u_statistics(..., names=...)`` does).
    """
    c = as_matrix(clean, names[0], check_finite)
    p = as_matrix(probe, names[1], check_finite)
    if c.shape[1] != p.shape[1]:
        raise InvalidArgumentError(
            f"Expected arguments `{names[0]}` and `{names[1]}` to have the same number of units "
            f"but got {c.shape[1]} and {p.shape[1]}"
        )
    return c, p


def _float32_keys(
    c: np.ndarray, p: np.ndarray, names: tuple[str, str] | None = None
) -> tuple[np.ndarray, np.ndarray, type] | None:
    """Order-preserving uint32 images of the values and the key dtype, or None (not float32).

    With ``names``, also check that the values are finite (in the same passes where possible).
    """
    if c.dtype == np.float32 and p.dtype == np.float32:
        cu, pu = c.view(np.uint32), p.view(np.uint32)
        top = max(cu.max(initial=0), pu.max(initial=0))
        if top < _INF32:
            return cu, pu, np.uint32  # finite, no sign bit: the bits sort like the values
    if names is not None:
        _check_finite(c, names[0])
        _check_finite(p, names[1])
    if c.dtype == np.float64 or p.dtype == np.float64:
        with np.errstate(over="ignore"):
            c32, p32 = c.astype(np.float32), p.astype(np.float32)
        if not (np.array_equal(c32, c) and np.array_equal(p32, p)):
            return None
        c, p = c32, p32
        if max(c.view(np.uint32).max(initial=0), p.view(np.uint32).max(initial=0)) < _SIGN:
            return c.view(np.uint32), p.view(np.uint32), np.uint32
    keys = []
    for x in (c, p):
        u = (x + np.float32(0.0)).view(np.uint32)  # -0.0 becomes +0.0: they compare equal
        mask = (u.view(np.int32) >> 31).view(np.uint32) | _SIGN  # negatives: flip every bit
        keys.append(u ^ mask)
    return keys[0], keys[1], np.uint64


def _generic_keys(c: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Sorted keys ``[n_units, n0 + n1]`` from a stable argsort of any real values."""
    n0 = c.shape[0]
    vals = np.empty((c.shape[1], n0 + p.shape[0]), dtype=np.float64)
    np.copyto(vals[:, :n0].T, c)  # walk the inputs row by row (see _fill_sorted)
    np.copyto(vals[:, n0:].T, p)
    order = np.argsort(vals, axis=1, kind="stable")  # clean (indices < n0) first within a tie
    sv = np.take_along_axis(vals, order, axis=1)
    dense = np.zeros(sv.shape, dtype=np.int64)
    np.cumsum(sv[:, 1:] != sv[:, :-1], axis=1, out=dense[:, 1:])
    return (dense << 1) | (order >= n0)


def sorted_key_chunks(
    clean: np.ndarray, probe: np.ndarray, chunk: int | None = None
) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(units, keys)``: ``keys[u, k] = 2 * v + label`` sorted along each row.

    ``clean`` ``[n0, n_units]`` and ``probe`` ``[n1, n_units]`` are validated matrices. Equal values
    share ``v``; within a tie the clean keys (label 0) come first. The buffer is reused: use each
    chunk before asking for the next.
    """
    n0, n_units = clean.shape
    chunk = chunk or chunk_units(n0 + probe.shape[0])
    fast = _float32_keys(clean, probe)
    buf = None if fast is None else np.empty((min(chunk, n_units), n0 + probe.shape[0]), fast[2])
    for a in range(0, n_units, chunk):
        units = slice(a, min(a + chunk, n_units))
        if fast is None:
            yield units, _generic_keys(clean[:, units], probe[:, units])
        else:
            yield units, _fill_sorted(buf[: units.stop - a], fast[0][:, units], fast[1][:, units])


def _fill_sorted(k: np.ndarray, ck: np.ndarray, pk: np.ndarray) -> np.ndarray:
    """Write the keys of ``ck`` ``[n0, m]`` and ``pk`` ``[n1, m]`` into ``k`` ``[m, n]``, sorted.

    The output is addressed through a transposed view so that numpy walks the (large) inputs
    row by row and scatters into the (cache-sized) chunk, not the other way round.
    """
    n0 = ck.shape[0]
    if k.dtype == np.uint32:  # shift while transposing: one pass
        np.left_shift(ck, 1, out=k[:, :n0].T)
        np.left_shift(pk, 1, out=k[:, n0:].T)
    else:  # widen first, then shift
        np.copyto(k[:, :n0].T, ck)
        np.copyto(k[:, n0:].T, pk)
        k <<= 1
    k[:, n0:] |= 1
    k.sort(axis=1)
    return k


def _lower_bound(flat: np.ndarray, base: np.ndarray, length: np.ndarray, x: np.ndarray):
    """First index in ``[base, base + length)`` with ``flat[index] >= x`` (lock-step, length>=1)."""
    base, length = base.copy(), length.copy()
    for _ in range(int(length.max()).bit_length()):
        half = length >> 1
        base += half * (flat[base + half] < x)
        length -= half
    return base + (flat[base] < x)


def _tie_pairs(k: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    """Per row of sorted keys ``[m, n]``, the number of (clean, probe) pairs of equal values."""
    m, n = k.shape
    x = np.bitwise_xor(k[:, 1:], k[:, :-1], out=scratch)
    split = np.flatnonzero(x == 1)  # the last clean key, then the first probe key, same value
    if split.size == 0:
        return np.zeros(m, dtype=np.float64)
    row, i = np.divmod(split, n - 1)
    at = row * n + i
    flat = k.reshape(-1)
    found = _lower_bound(  # first clean of the tie, and first key past its last probe
        flat,
        np.concatenate([row * n, at + 1]),
        np.concatenate([i + 1, n - 1 - i]),
        np.concatenate([flat[at], flat[at + 1] + 1]),
    )
    start, stop = found[: split.size], found[split.size :]
    pairs = (at - start + 1).astype(np.float64) * (stop - at - 1)
    return np.bincount(row, weights=pairs, minlength=m)


def u_from_sorted(
    k: np.ndarray,
    n0: int,
    n1: int,
    labels: np.ndarray | None = None,
    scratch: np.ndarray | None = None,
) -> np.ndarray:
    """Mann-Whitney U of the probe (ties count half) per row of sorted keys ``[m, n0 + n1]``.

    ``labels`` (float32 or float64) and ``scratch`` (``k``'s dtype, ``[m, n - 1]``) are optional
    buffers at least as large as needed.
    """
    m, n = k.shape
    dtype = np.float32 if n * n1 < 2**24 else np.float64  # integer sums stay exact in float32
    if labels is None or labels.dtype != dtype:
        labels = np.empty(k.shape, dtype)
    labels = np.bitwise_and(k, 1, out=labels[:m], casting="unsafe")
    # einsum, not BLAS: BLAS threads that spin would fight the chunk threads for the cores
    pos_sum = np.einsum("ij,j->i", labels, np.arange(n, dtype=dtype)).astype(np.float64)
    if scratch is not None and scratch.dtype == k.dtype:
        scratch = scratch[:m]
    return pos_sum - n1 * (n1 - 1) / 2.0 - 0.5 * _tie_pairs(k, scratch)


def u_statistics(
    clean: np.ndarray,
    probe: np.ndarray,
    threads: int | None = None,
    names: tuple[str, str] | None = None,
) -> np.ndarray:
    """U statistic of every unit of two matrices from :func:`as_pair`, over a few threads.

    ``names``: check finiteness too (for matrices validated with ``check_finite=False``).
    """
    n0, n1, n_units = clean.shape[0], probe.shape[0], clean.shape[1]
    out = np.empty(n_units, dtype=np.float64)
    fast = _float32_keys(clean, probe, names)
    step = chunk_units(n0 + n1)
    chunks = [slice(a, min(a + step, n_units)) for a in range(0, n_units, step)]

    def work(part: list[slice]) -> None:
        buf = None if fast is None else np.empty((step, n0 + n1), dtype=fast[2])
        labels = np.empty((step, n0 + n1), dtype=np.float32)
        scratch = None if buf is None else np.empty((step, n0 + n1 - 1), dtype=buf.dtype)
        for units in part:
            if fast is None:
                k = _generic_keys(clean[:, units], probe[:, units])
            else:
                k = _fill_sorted(buf[: units.stop - units.start], *(f[:, units] for f in fast[:2]))
            out[units] = u_from_sorted(k, n0, n1, labels, scratch)

    n_threads = min(len(chunks), default_threads() if threads is None else threads)
    if n_threads <= 1 or n_units * (n0 + n1) < 2**20:
        work(chunks)
    else:
        thread_map(work, [chunks[i::n_threads] for i in range(n_threads)], n_threads)
    return out


def placements(k: np.ndarray, n0: int, n1: int) -> tuple[np.ndarray, np.ndarray]:
    """DeLong structural components (placement values) from sorted keys ``[m, n0 + n1]``.

    Returns ``v10`` ``[m, n1]``: for each probe value x, P(clean < x) + 0.5 P(clean == x), and
    ``v01`` ``[m, n0]``: for each clean value x, P(probe > x) + 0.5 P(probe == x); both in
    sorted order (the variance does not care).
    """
    m, n = k.shape
    is_probe = (k & 1).astype(np.int32)
    same = (k[:, 1:] ^ k[:, :-1]) <= 1  # positions j and j + 1 hold equal values
    probe_incl = np.cumsum(is_probe, axis=1, dtype=np.int32)
    probe_excl = probe_incl - is_probe
    clean_excl = np.arange(n, dtype=np.int32) - probe_excl  # clean values <= x for a probe at j
    first = np.ones((m, n), dtype=bool)  # first position of a run of equal values
    first[:, 1:] = ~same
    last = np.ones((m, n), dtype=bool)
    last[:, :-1] = ~same
    # the counts never decrease along a row, so a running max (min from the right) carries the
    # count at the start (end) of each run of equal values to every position of the run
    clean_below = np.maximum.accumulate(np.where(first, clean_excl, 0), axis=1)
    probe_upto = np.minimum.accumulate(np.where(last, probe_incl, n1)[:, ::-1], axis=1)[:, ::-1]
    mask = is_probe.astype(bool)  # every row holds n1 probes, so boolean indexing keeps the shape
    v10 = (clean_below + clean_excl)[mask].reshape(m, n1) / (2.0 * n0)
    v01 = (2 * n1 - probe_upto - probe_excl)[~mask].reshape(m, n0) / (2.0 * n1)
    return v10, v01


def swapped_u_statistics(
    clean: np.ndarray, probe: np.ndarray, swaps: np.ndarray, names: tuple[str, str] | None = None
) -> np.ndarray | None:
    """U statistic of every unit after each sign flip: ``[n_perm, n_units]``, or None when the
    values have no float32 keys (the caller then sorts each permutation itself).

    ``clean`` and ``probe`` ``[n, n_units]`` are paired (row i of both is one image); in
    permutation k, image i's two values trade sides where ``swaps[k, i]``. The values of a unit
    are the same in every permutation, so one sort gives their midranks, and each permutation's U
    is the sum of the midranks on the probe side, less ``n (n + 1) / 2``. The sums are of halves
    below 2**52, exact in float64: the result equals :func:`u_statistics` of each permutation.
    ``names``: check finiteness too.
    """
    n, n_units = clean.shape
    fast = _float32_keys(clean, probe, names)
    if fast is None:
        return None
    flips = np.asarray(swaps, dtype=np.float64)
    out = np.empty((flips.shape[0], n_units), dtype=np.float64)
    step = chunk_units(2 * n)
    position = np.arange(2 * n, dtype=np.uint64)
    column = np.arange(2 * n)
    for a in range(0, n_units, step):
        units = slice(a, min(a + step, n_units))
        keys = np.empty((units.stop - a, 2 * n), dtype=np.uint64)
        np.copyto(keys[:, :n].T, fast[0][:, units])  # walk the inputs row by row
        np.copyto(keys[:, n:].T, fast[1][:, units])
        keys <<= np.uint64(32)
        keys |= position  # value, then where it came from (clean 0..n-1, probe n..2n-1)
        keys.sort(axis=1)
        value = keys >> np.uint64(32)
        new = value[:, 1:] != value[:, :-1]
        starts = np.ones(keys.shape, dtype=bool)
        starts[:, 1:] = new
        ends = np.ones(keys.shape, dtype=bool)
        ends[:, :-1] = new
        first = np.maximum.accumulate(np.where(starts, column, 0), axis=1)
        last = np.minimum.accumulate(np.where(ends, column, 2 * n - 1)[:, ::-1], axis=1)[:, ::-1]
        ranks = np.empty(keys.shape, dtype=np.float64)
        where = (keys & np.uint64(0xFFFFFFFF)).astype(np.intp)
        np.put_along_axis(ranks, where, (first + last) / 2.0 + 1.0, axis=1)
        kept = ranks[:, n:].sum(axis=1)  # every image's probe value on the probe side
        traded = np.einsum("kn,un->ku", flips, ranks[:, :n] - ranks[:, n:])
        out[:, units] = kept + traded - n * (n + 1) / 2.0
    return out
