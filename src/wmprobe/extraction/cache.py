"""The activation cache on disk: one entry per model / variant / layer and key, resumable.

Layout (readable; every entry's key is spelled out in its ``manifest.json``)::

    <root>/activations/<model>/<variant>/<layer>/<key digest>/
        manifest.json   the key, number of images and units, dtype, chunk size, complete or not
        values.npy      [n_images, n_units], Fortran order (a unit's values are contiguous)
        chunks/NNNNNN.json  per finished chunk of images: which were read, why not, drawn texts
        rows.json       all chunks together, once the entry is complete
    <root>/files.sqlite  sha1 of each image file, remembered by (path, size, mtime)

The key holds everything the values depend on: the images (ids and the sha1 of their bytes), the
model name and a checksum of its weights, the variant (``clean`` or a scenario: its spec hash and
the seed), the layer, the reduction, the preprocessing (frame size, input size, mean, std, JPEG
quality) and the dtype. The clean variant does not depend on the seed or the scenarios, so one
clean entry serves every scenario and seed.

Chunks of images are written with ``pwrite`` and then marked done by an atomic rename, so a killed
run leaves only whole chunks behind and the next run computes the rest. A run holds a file lock
(``filelock``) on each entry it writes; a second run on the same entries waits for it. Memory use
does not grow with the number of images: values go to disk chunk by chunk and are read back as
memory maps or in blocks of units. The data survive a killed process, not a power cut (no fsync).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from wmprobe._util import file_digest
from wmprobe._version import __version__
from wmprobe.errors import CacheError, InvalidArgumentError

CACHE_FORMAT = 1
DEFAULT_CHUNK = 256
DTYPES = ("float32", "float16")


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


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class CacheEntry:
    """One entry: the values of one layer on one variant for one image list, model and key."""

    def __init__(self, root: Path, key: EntryKey, chunk_size: int):
        self.key = key
        self.chunk_size = chunk_size
        self.path = root / "activations" / key.folder()
        self._offset: int | None = None

    @property
    def n_images(self) -> int:
        return self.key.n_images

    def manifest(self) -> dict | None:
        """The manifest, or None when the entry does not exist yet."""
        try:
            manifest = json.loads((self.path / "manifest.json").read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise CacheError(
                f"Cache manifest {self.path / 'manifest.json'} is unreadable: {exc}"
            ) from exc
        if manifest.get("key") != self.key.as_dict():
            raise CacheError(
                f"Cache entry {self.path} holds other data than its key says (a digest "
                "collision or a hand-edited cache); remove that folder."
            )
        return manifest

    def is_complete(self) -> bool:
        manifest = self.manifest()
        return bool(manifest and manifest.get("complete"))

    def n_chunks(self) -> int:
        return -(-self.n_images // self.chunk_size)

    def done_chunks(self) -> set[int]:
        """Indices of the chunks already written (all of them when complete)."""
        manifest = self.manifest()
        if manifest is None or manifest.get("chunk_size") != self.chunk_size:
            return set()
        if manifest.get("complete"):
            return set(range(self.n_chunks()))
        chunks = self.path / "chunks"
        if not chunks.is_dir():
            return set()
        return {int(p.stem) for p in chunks.glob("*.json") if p.stem.isdigit()}

    @_io
    def lock(self) -> FileLock:
        """The entry's file lock (held while a run writes it)."""
        self.path.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.path / ".lock"))

    @_io
    def begin(self) -> None:
        """Make the entry ready to take chunks (the caller holds its lock)."""
        manifest = self.manifest()
        if manifest is not None and manifest.get("chunk_size") == self.chunk_size:
            return
        for child in self.path.iterdir():  # another chunk size, or a half-made entry: restart
            if child.name != ".lock":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        (self.path / "chunks").mkdir()
        self._write_manifest(complete=False, n_units=None)

    def _write_manifest(self, *, complete: bool, n_units: int | None) -> None:
        manifest = {
            "key": self.key.as_dict(),
            "digest": self.key.digest(),
            "n_images": self.n_images,
            "n_units": n_units,
            "dtype": self.key.dtype,
            "order": "F",
            "chunk_size": self.chunk_size,
            "complete": complete,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "wmprobe_version": __version__,
        }
        _atomic_write_text(self.path / "manifest.json", json.dumps(manifest, indent=1))

    def _data_offset(self) -> int:
        if self._offset is None:
            with open(self.path / "values.npy", "rb") as f:
                major, _ = np.lib.format.read_magic(f)
                if major == 1:
                    np.lib.format.read_array_header_1_0(f)
                else:
                    np.lib.format.read_array_header_2_0(f)
                self._offset = f.tell()
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
        the chunk could be read), then mark the chunk done."""
        start = index * self.chunk_size
        rows = min(self.chunk_size, self.n_images - start)
        if values is not None:
            if values.shape[0] != rows:
                raise CacheError(
                    f"Chunk {index} of {self.path} has {values.shape[0]} rows, not {rows}"
                )
            self._ensure_values(values.shape[1])
            cols = np.asfortranarray(values, dtype=self.key.dtype)
            itemsize = cols.dtype.itemsize
            offset = self._data_offset()
            fd = os.open(self.path / "values.npy", os.O_WRONLY)
            try:
                for unit in range(cols.shape[1]):
                    pos = offset + (unit * self.n_images + start) * itemsize
                    os.pwrite(fd, memoryview(cols[:, unit]).cast("B"), pos)
            finally:
                os.close(fd)
        record = {
            "rows": [start, start + rows],
            "ok": ok.tolist(),
            "errors": errors,
            "texts": texts,
        }
        _atomic_write_text(self.path / "chunks" / f"{index:06d}.json", json.dumps(record))

    def _ensure_values(self, n_units: int) -> None:
        path = self.path / "values.npy"
        if path.exists():
            have = self.manifest().get("n_units")
            if have != n_units:
                raise CacheError(f"{self.path}: {n_units} units now, {have} before; remove it.")
            return
        tmp = self.path / ".values.npy.tmp"
        mm = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=self.key.dtype, shape=(self.n_images, n_units), fortran_order=True
        )
        del mm  # nothing written: the file is sparse until chunks arrive
        os.replace(tmp, path)
        self._write_manifest(complete=False, n_units=n_units)

    @_io
    def finish(self) -> None:
        """Gather the chunks' rows into rows.json and mark the entry complete."""
        if self.is_complete():
            return
        ok: list[bool] = []
        errors: dict[str, str] = {}
        texts: list[str] = []
        for index in range(self.n_chunks()):
            record = json.loads((self.path / "chunks" / f"{index:06d}.json").read_text())
            ok += record["ok"]
            errors.update(record["errors"])
            texts += record["texts"] or []
        if not (self.path / "values.npy").exists():
            self._ensure_values(0)
        n_units = int(self.manifest()["n_units"])
        rows = {"ok": ok, "errors": errors, "texts": texts or None}
        _atomic_write_text(self.path / "rows.json", json.dumps(rows))
        self._write_manifest(complete=True, n_units=n_units)
        shutil.rmtree(self.path / "chunks", ignore_errors=True)

    def rows(self) -> dict:
        """``ok`` (per image), ``errors`` (image id -> reason), ``texts`` (per image, or None)."""
        return json.loads((self.path / "rows.json").read_text())

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
        self._memo: dict[tuple, str] = {}

    def entry(self, key: EntryKey) -> CacheEntry:
        return CacheEntry(self.root, key, self.chunk_size)

    def file_hashes(self, paths: Sequence[str | Path]) -> list[str]:
        """sha1 of each file's bytes, remembered by (path, size, mtime) in ``files.sqlite``.

        An unreadable file gets ``unreadable:<reason>`` (extraction then skips it).
        """
        out: list[str] = []
        try:
            db = sqlite3.connect(self.root / "files.sqlite", timeout=60)
            try:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS files "
                    "(path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, sha1 TEXT)"
                )
                with db:
                    for path in paths:
                        out.append(self._file_hash(db, Path(path)))
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise CacheError(f"Cannot use {self.root / 'files.sqlite'}: {exc}") from exc
        return out

    def _file_hash(self, db: sqlite3.Connection, path: Path) -> str:
        try:
            stat = path.stat()
        except OSError as exc:
            return f"unreadable:{type(exc).__name__}"
        name = str(path.resolve())
        memo_key = (name, stat.st_size, stat.st_mtime_ns)
        if memo_key in self._memo:
            return self._memo[memo_key]
        row = db.execute(
            "SELECT size, mtime_ns, sha1 FROM files WHERE path = ?", (name,)
        ).fetchone()
        if row is not None and (row[0], row[1]) == (stat.st_size, stat.st_mtime_ns):
            digest = row[2]
        else:
            try:
                digest = file_digest(path, "sha1")
            except OSError as exc:
                return f"unreadable:{type(exc).__name__}"
            db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                (name, stat.st_size, stat.st_mtime_ns, digest),
            )
        self._memo[memo_key] = digest
        return digest

    def images_digest(self, image_ids: Sequence[str], paths: Sequence[str | Path]) -> str:
        """sha256 over the image ids, in order, and the sha1 of each file's bytes."""
        digest = hashlib.sha256()
        for image_id, file_hash in zip(image_ids, self.file_hashes(paths), strict=True):
            digest.update(f"{image_id}\t{file_hash}\n".encode())
        return digest.hexdigest()


def acquire(entries: Sequence[CacheEntry], *, announce: bool = True) -> list[FileLock]:
    """Lock ``entries`` in a fixed order (no deadlock); wait, saying so, while another run holds
    one."""
    locks = []
    try:
        for entry in sorted(entries, key=lambda e: str(e.path)):
            lock = entry.lock()
            try:
                lock.acquire(timeout=0)
            except Timeout:
                if announce:
                    print(f"wmprobe: waiting for another run using {entry.path}", file=sys.stderr)
                lock.acquire()
            locks.append(lock)
    except BaseException:
        release(locks)
        raise
    return locks


def release(locks: Sequence[FileLock]) -> None:
    for lock in reversed(locks):
        lock.release()
