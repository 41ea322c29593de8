"""The activation cache on disk: one entry per model / variant / layer and key, resumable, checked.

Layout (readable; every entry's key is spelled out in its ``manifest.json``)::

    <root>/activations/<model>/<variant>/<layer>/<key digest>/
        manifest.json   the key, number of images and units, dtype, chunk size, complete or not,
                        and once complete the CRC-32 of each chunk's values and of rows.json
        values.npy      [n_images, n_units], Fortran order (a unit's values are contiguous)
        chunks/NNNNNN.json  per finished chunk of images: which were read, why not, drawn texts,
                        the CRC-32 of the chunk's values
        rows.json       all chunks together, once the entry is complete
    <root>/locks/<model>/NN.lock  the file locks (a fixed number per model)
    <root>/files.sqlite  sha1 of each image file (see :mod:`wmprobe.extraction.file_hashes`)

The key holds everything the values depend on: the images (ids and the sha1 of their bytes), the
model name, a checksum of its weights and one of its code (see
:meth:`~wmprobe.models.loaded.LoadedModel.code_hash`: also the torch, torchvision and timm
versions it uses), the device type and autocast dtype, the
variant (``clean`` or a scenario: its spec hash and the seed), the layer, the reduction, the
preprocessing (frame size, input size, mean, std, JPEG quality), the dtype and the batch size (see
:mod:`wmprobe.extraction.chunks`). The clean variant
does not depend on the seed or the scenarios, so one clean entry serves every scenario and seed.

Chunks of images are written into a shared memory map of values.npy (the page cache, as a write
call would) and then marked done by an atomic rename, so a killed
run leaves only whole chunks behind and the next run computes the rest. Before an entry is used or
resumed it is checked: the ``.npy`` header (dtype, shape, order) and the file size against the
manifest, rows.json and every chunk against their CRC-32. A damaged entry is computed again, and a
line on stderr says so; it is never read as data. A run holds file locks on the entries it writes:
entries map to one of :data:`LOCK_STRIPES` lock files per model, so the number of open locks does
not grow with the number of entries; a second run on the same entries (or ones sharing a lock
file) waits for the first. Memory use does not grow with the number of images: values go to disk
chunk by chunk and are read back as memory maps or in blocks of units. The data survive a killed
process, not a power cut (no fsync); a power cut's damage is caught by the checks.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import time
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from wmprobe._util import atomic_write
from wmprobe._version import __version__
from wmprobe.errors import CacheError, InvalidArgumentError
from wmprobe.extraction.file_hashes import FileHashes

CACHE_FORMAT = 2
DEFAULT_CHUNK = 256
DTYPES = ("float32", "float16")
#: Lock files per model folder; a run holds at most this many locks, however many entries.
LOCK_STRIPES = 64
#: Chunk writes into one memory map of values.npy before it is mapped afresh: the map saves a
#: write call per unit and chunk, and renewing it keeps the pages it holds few.
REMAP_WRITES = 64


def default_cache_dir() -> Path:
    """``$WMPROBE_CACHE`` when set, else ``~/.cache/wmprobe``."""
    env = os.environ.get("WMPROBE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wmprobe"


def slug(text: str) -> str:
    """A folder name for ``text``: letters, digits and ``._+=@-`` kept, the rest ``_``."""
    out = re.sub(r"[^A-Za-z0-9._+=@-]+", "_", text).strip("._")[:80]
    return out or "_"


@dataclasses.dataclass(frozen=True)
class EntryKey:
    """Everything one cache entry's values depend on (see the module docstring)."""

    model: str
    weights: str
    code: str
    device: str
    autocast: str | None
    variant: str
    artifact: str | None
    seed: int | None
    layer: str
    reduction: str
    frame_size: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    jpeg_quality: int | None
    images: str
    n_images: int
    dtype: str
    batch_size: int = 16  # a frame's last bits depend on the batch it went through
    format: int = CACHE_FORMAT

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def digest(self) -> str:
        """sha256 hex digest of the key."""
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def folder(self) -> Path:
        """The entry's folder under ``<root>/activations``."""
        return Path(slug(self.model), slug(self.variant), slug(self.layer), self.digest()[:20])


def _io(method):
    """Turn an OSError of a cache write (disk full, read-only folder) into a CacheError."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            raise CacheError(f"Cannot write the activation cache at {self.path}: {exc}") from exc

    return wrapper


def write_rows(target: np.ndarray, start: int, rows: np.ndarray) -> None:
    """Rows ``start:start + len(rows)`` of a values map (every unit)."""
    target[start : start + rows.shape[0]] = rows


def crc32(values: np.ndarray) -> int:
    """CRC-32 of a block of rows ``[rows, units]`` as laid out in Fortran order (unit by unit).

    zlib's CRC-32 ran at ~2 GB/s here, adler32 at 1.2 and blake2b at 0.34 (a 256 x 1280 float32
    chunk); it catches flipped bits and shifted bytes, which is what it is for (not tampering).
    """
    return zlib.crc32(np.asfortranarray(values).T)


def _read_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int, int]:
    """(shape, fortran order, dtype, data offset, file size) of a ``.npy`` file."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f".npy format version {version} is not one wmprobe writes")
        return shape, fortran, dtype, f.tell(), os.fstat(f.fileno()).st_size


class CacheEntry:
    """One entry: the values of one layer on one variant for one image list, model and key."""

    def __init__(self, root: Path, key: EntryKey, chunk_size: int):
        self.key = key
        self.chunk_size = chunk_size
        self.root = root
        self.path = root / "activations" / key.folder()
        self._offset: int | None = None
        self._rows: dict | None = None
        self._checked = False
        self._writer: np.memmap | None = None  # values.npy mapped for writing, during a run
        self._writes = 0

    @property
    def n_images(self) -> int:
        return self.key.n_images

    def manifest(self) -> dict | None:
        """The manifest; None when the entry does not exist yet or its manifest is damaged."""
        return self._read_manifest()[0]

    def _read_manifest(self) -> tuple[dict | None, str | None]:
        """(manifest or None, why it cannot be used or None)."""
        try:
            manifest = json.loads((self.path / "manifest.json").read_text())
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError) as exc:
            return None, f"manifest.json is unreadable: {exc}"
        if not isinstance(manifest, dict) or manifest.get("key") != self.key.as_dict():
            return None, "manifest.json holds another key"
        return manifest, None

    def is_complete(self) -> bool:
        manifest = self.manifest()
        return bool(manifest and manifest.get("complete"))

    def usable(self) -> bool:
        """Complete and undamaged (checked once per entry object: header, size, checksums)."""
        if not self._checked:
            self._checked = self.is_complete() and self.problem() is None
        return self._checked

    def n_chunks(self) -> int:
        return -(-self.n_images // self.chunk_size)

    def done_chunks(self) -> set[int]:
        """Indices of the chunks already written (all of them when complete)."""
        manifest = self.manifest()
        if manifest is None:
            return set()
        if manifest.get("complete"):
            return set(range(self.n_chunks()))
        if manifest.get("chunk_size") != self.chunk_size:
            return set()
        chunks = self.path / "chunks"
        if not chunks.is_dir():
            return set()
        return {int(p.stem) for p in chunks.glob("*.json") if p.stem.isdigit()}

    def problem(self) -> str | None:
        """Why the entry on disk can be neither used nor resumed (damage), or None.

        A missing entry, one of another chunk size and one stopped before its first chunk are
        not damaged: :meth:`begin` starts them over.
        """
        manifest, why = self._read_manifest()
        if why or manifest is None:
            return why
        n_units = manifest.get("n_units")
        if manifest.get("complete"):
            checksums, chunk_size = manifest.get("checksums"), manifest.get("chunk_size")
            if (
                not isinstance(n_units, int)
                or not isinstance(chunk_size, int)
                or not isinstance(checksums, list)
                or len(checksums) != -(-self.n_images // max(chunk_size, 1))
            ):
                return "manifest.json lacks the number of units or the checksums"
            return (
                self._values_problem(n_units)
                or self._rows_problem(manifest.get("rows_crc32"))
                or self._checksum_problem(dict(enumerate(checksums)), chunk_size)
            )
        if manifest.get("chunk_size") != self.chunk_size or n_units is None:
            return None
        return self._values_problem(n_units) or self._markers_problem()

    def _values_problem(self, n_units: int) -> str | None:
        path = self.path / "values.npy"
        try:
            shape, fortran, dtype, offset, size = _read_header(path)
        except FileNotFoundError:
            return "values.npy is missing"
        except (OSError, ValueError, SyntaxError) as exc:
            return f"values.npy has no valid header: {exc}"
        want = (self.n_images, n_units)
        if shape != want or not fortran or dtype != np.dtype(self.key.dtype):
            order = "Fortran" if fortran else "C"
            return (
                f"values.npy holds {dtype} {shape} in {order} order, not {self.key.dtype} "
                f"{want} in Fortran order"
            )
        expected = offset + self.n_images * n_units * dtype.itemsize
        if size != expected:
            return f"values.npy has {size} bytes, not {expected}"
        self._offset = offset
        return None

    def _rows_problem(self, crc: int | None) -> str | None:
        try:
            data = (self.path / "rows.json").read_bytes()
        except FileNotFoundError:
            return "rows.json is missing"
        except OSError as exc:
            return f"rows.json is unreadable: {exc}"
        if zlib.crc32(data) != crc:
            return "rows.json does not match its checksum"
        rows = json.loads(data)
        self._rows = rows
        return None

    def _markers_problem(self) -> str | None:
        checksums = {}
        for marker in sorted((self.path / "chunks").glob("*.json")):
            index = int(marker.stem) if marker.stem.isdigit() else -1
            start = index * self.chunk_size
            rows = min(self.chunk_size, self.n_images - start)
            try:
                record = json.loads(marker.read_text())
                valid = (
                    0 <= index < self.n_chunks()
                    and record["rows"] == [start, start + rows]
                    and len(record["ok"]) == rows
                )
                checksums[index] = record["crc32"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                return f"chunks/{marker.name} is unreadable: {exc!r}"
            if not valid:
                return f"chunks/{marker.name} does not describe chunk {index}"
        return self._checksum_problem(checksums, self.chunk_size)

    def _checksum_problem(self, checksums: dict[int, int | None], chunk_size: int) -> str | None:
        if all(crc is None for crc in checksums.values()):
            return None
        values = np.load(self.path / "values.npy", mmap_mode="r")
        for index, crc in sorted(checksums.items()):
            start = index * chunk_size
            if crc is not None and crc32(values[start : start + chunk_size]) != crc:
                stop = min(start + chunk_size, self.n_images)
                return f"the values of images {start}-{stop - 1} do not match their checksum"
        return None

    @_io
    def begin(self) -> None:
        """Make the entry ready to take chunks (the caller holds its lock).

        What a stopped run left is resumed; an entry of another chunk size, or stopped before its
        first chunk, starts over; a damaged one (see :meth:`problem`) starts over and a line on
        stderr says so. An entry that another run completed meanwhile is left as it is.
        """
        why = self.problem()
        if why is not None:
            print(
                f"wmprobe: the cache entry {self.path} is damaged ({why}); computing it again.",
                file=sys.stderr,
            )
        manifest = None if why else self.manifest()
        if manifest is not None and manifest.get("complete"):
            return
        if (
            manifest is not None
            and manifest.get("chunk_size") == self.chunk_size
            and manifest.get("n_units") is not None
        ):
            for tmp in [*self.path.glob(".*.tmp"), *self.path.glob("chunks/.*.tmp")]:
                tmp.unlink()  # half-written files of a stopped run
            return
        self.path.mkdir(parents=True, exist_ok=True)
        for child in self.path.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        (self.path / "chunks").mkdir()
        self._write_manifest(complete=False, n_units=None)
        self._offset, self._rows, self._checked, self._writer = None, None, False, None

    def _write_manifest(
        self,
        *,
        complete: bool,
        n_units: int | None,
        checksums: list[int | None] | None = None,
        rows_crc32: int | None = None,
    ) -> None:
        manifest = {
            "key": self.key.as_dict(),
            "digest": self.key.digest(),
            "n_images": self.n_images,
            "n_units": n_units,
            "dtype": self.key.dtype,
            "order": "F",
            "chunk_size": self.chunk_size,
            "complete": complete,
            "checksums": checksums,
            "rows_crc32": rows_crc32,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "wmprobe_version": __version__,
        }
        atomic_write(self.path / "manifest.json", json.dumps(manifest, indent=1))

    def _data_offset(self) -> int:
        if self._offset is None:
            self._offset = _read_header(self.path / "values.npy")[3]
        return self._offset

    @_io
    def write_chunk(
        self,
        index: int,
        values: np.ndarray | None,
        ok: np.ndarray,
        errors: dict[str, str],
        texts: list[str] | None,
    ) -> None:
        """Write rows of chunk ``index`` (``values``: ``[rows, units]``; None when no image of
        the chunk could be read), then mark the chunk done with the values' CRC-32."""
        start = index * self.chunk_size
        rows = min(self.chunk_size, self.n_images - start)
        crc = None
        if values is not None:
            if values.shape[0] != rows:
                raise CacheError(
                    f"Chunk {index} of {self.path} has {values.shape[0]} rows, not {rows}"
                )
            cols = np.asfortranarray(values, dtype=self.key.dtype)
            crc = crc32(cols)
            target = self._values_map(cols.shape[1])
            if target is not None:
                write_rows(target, start, cols)
        record = {
            "rows": [start, start + rows],
            "ok": ok.tolist(),
            "errors": errors,
            "texts": texts,
            "crc32": crc,
        }
        atomic_write(self.path / "chunks" / f"{index:06d}.json", json.dumps(record))

    def _values_map(self, n_units: int) -> np.memmap | None:
        """values.npy (made first if need be) mapped for writing, renewed every REMAP_WRITES
        chunks; None when there are no units (nothing to write)."""
        if self._writer is None or self._writes >= REMAP_WRITES or self._writer.shape[1] != n_units:
            self._writer = None
            self._ensure_values(n_units)  # also: the same number of units as before
            if n_units == 0:
                return None
            self._writer = np.memmap(
                self.path / "values.npy",
                dtype=self.key.dtype,
                mode="r+",
                offset=self._data_offset(),
                shape=(self.n_images, n_units),
                order="F",
            )
            self._writes = 0
        self._writes += 1
        return self._writer

    def _ensure_values(self, n_units: int) -> None:
        path = self.path / "values.npy"
        if path.exists():
            have = self.manifest().get("n_units")
            if have != n_units:
                raise CacheError(
                    f"{self.path}: the model gave {n_units} units now and {have} before for the "
                    "same key; is the model deterministic in its shapes?"
                )
            return
        tmp = self.path / ".values.npy.tmp"
        mm = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=self.key.dtype, shape=(self.n_images, n_units), fortran_order=True
        )
        del mm  # nothing written: the file is sparse until chunks arrive
        os.replace(tmp, path)  # (a stop right here: begin() starts the entry over)
        self._write_manifest(complete=False, n_units=n_units)

    @_io
    def finish(self) -> None:
        """Gather the chunks' rows into rows.json and mark the entry complete, with checksums."""
        self._writer = None
        if self.is_complete():
            return
        ok: list[bool] = []
        errors: dict[str, str] = {}
        texts: list[str] = []
        checksums: list[int | None] = []
        for index in range(self.n_chunks()):
            record = json.loads((self.path / "chunks" / f"{index:06d}.json").read_text())
            ok += record["ok"]
            errors.update(record["errors"])
            texts += record["texts"] or []
            checksums.append(record["crc32"])
        if not (self.path / "values.npy").exists():
            self._ensure_values(0)
        n_units = int(self.manifest()["n_units"])
        rows = {"ok": ok, "errors": errors, "texts": texts or None}
        text = json.dumps(rows)
        atomic_write(self.path / "rows.json", text)
        self._write_manifest(
            complete=True,
            n_units=n_units,
            checksums=checksums,
            rows_crc32=zlib.crc32(text.encode()),
        )
        shutil.rmtree(self.path / "chunks", ignore_errors=True)
        self._rows, self._checked = rows, True

    def rows(self) -> dict:
        """``ok`` (per image), ``errors`` (image id -> reason), ``texts`` (per image, or None)."""
        if self._rows is None:
            self._rows = json.loads((self.path / "rows.json").read_text())
        return self._rows

    def open_values(self) -> np.ndarray:
        """The values ``[n_images, n_units]`` as a read-only memory map."""
        return np.load(self.path / "values.npy", mmap_mode="r")

    def read_units(self, start: int, stop: int) -> np.ndarray:
        """Units ``start:stop`` of every image, ``[n_images, stop - start]``, read (not mapped)."""
        dtype = np.dtype(self.key.dtype)
        count = (stop - start) * self.n_images
        offset = self._data_offset() + start * self.n_images * dtype.itemsize
        with open(self.path / "values.npy", "rb") as f:
            data = np.fromfile(f, dtype=dtype, count=count, offset=offset)
        return data.reshape(stop - start, self.n_images).T


class ActivationCache:
    """A cache folder (default :func:`default_cache_dir`) of activation entries.

    Example:
        >>> cache = ActivationCache("/tmp/wmprobe-cache")  # doctest: +SKIP
        >>> acts = extract(model, records, scenarios, cache=cache)  # doctest: +SKIP
    """

    def __init__(self, root: str | Path | None = None, *, chunk_size: int = DEFAULT_CHUNK):
        if chunk_size < 1:
            raise InvalidArgumentError(
                f"Expected argument `chunk_size` to be >= 1 but got {chunk_size}"
            )
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.chunk_size = chunk_size
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"Cannot create the cache folder {str(self.root)!r}: {exc}") from exc
        self.file_hashes = FileHashes(self.root / "files.sqlite")

    def entry(self, key: EntryKey) -> CacheEntry:
        return CacheEntry(self.root, key, self.chunk_size)


def images_digest(image_ids: Sequence[str], file_hashes: Sequence[str]) -> str:
    """sha256 over the image ids, in order, and the sha1 of each file's bytes
    (:class:`~wmprobe.extraction.file_hashes.FileHashes`)."""
    digest = hashlib.sha256()
    for image_id, file_hash in zip(image_ids, file_hashes, strict=True):
        digest.update(f"{image_id}\t{file_hash}\n".encode())
    return digest.hexdigest()


def lock_path(entry: CacheEntry) -> Path:
    """The lock file that guards ``entry``: one of :data:`LOCK_STRIPES` for its model."""
    stripe = int(entry.key.digest()[:8], 16) % LOCK_STRIPES
    return entry.root / "locks" / slug(entry.key.model) / f"{stripe:02d}.lock"


def acquire(entries: Iterable[CacheEntry], *, announce: bool = True) -> list[FileLock]:
    """Lock ``entries`` (their lock files, each once, in a fixed order: no deadlock); wait,
    saying so, while another run holds one."""
    paths = sorted({lock_path(e) for e in entries})
    locks: list[FileLock] = []
    try:
        for path in paths:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CacheError(f"Cannot write the activation cache at {path}: {exc}") from exc
            lock = FileLock(str(path))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                if announce:
                    print(
                        f"wmprobe: waiting for another run using {path} (cache entries of "
                        f"{path.parent.name})",
                        file=sys.stderr,
                    )
                lock.acquire()
            locks.append(lock)
    except BaseException:
        release(locks)
        raise
    return locks


def release(locks: Sequence[FileLock]) -> None:
    for lock in reversed(locks):
        lock.release()


def prepare(entries: Iterable[CacheEntry], *, announce: bool = True) -> list[FileLock]:
    """Lock every entry that is not complete and sound, and make each ready for its chunks
    (:meth:`CacheEntry.begin`: resumed, or started over when damaged); returns the locks to
    :func:`release` once the entries are finished."""
    todo = [e for e in entries if not e.usable()]
    locks = acquire(todo, announce=announce)
    try:
        for entry in todo:
            entry.begin()
    except BaseException:
        release(locks)
        raise
    return locks
