"""The sha1 of image files, remembered in ``files.sqlite`` while the file is provably unchanged.

A remembered sha1 is used only while the file's size, mtime, ctime and inode are what they were
when it was hashed. A rewrite in place that restores the size and the mtime (``os.utime``) still
moves the ctime, which no system call sets back; a file replaced by a rename has another inode.
Where the file system cannot tell (ctime or inode 0), or the file changed less than a second
before it was hashed (a rewrite within the same clock tick could go unseen), the bytes are hashed
every time.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from wmprobe._util import file_digest
from wmprobe.errors import CacheError

#: A file whose ctime is closer than this to the time of hashing is not remembered.
SETTLE_NS = 1_000_000_000
_TABLE = "file_sha1"  # (the table `files` of earlier versions, keyed on size and mtime, is unused)
#: How the hash of a file that cannot be read begins (then the reason).
UNREADABLE = "unreadable:"


class FileHashes:
    """sha1 of files' bytes, remembered in an sqlite file across runs and in memory within one."""

    def __init__(self, db_path: Path):
        self.db_path = db_path
        self._memo: dict[tuple, str] = {}

    def __call__(self, paths: Sequence[str | Path]) -> list[str]:
        """sha1 of each file; an unreadable file gets ``unreadable:<reason>``."""
        out: list[str] = []
        try:
            db = sqlite3.connect(self.db_path, timeout=60)
            try:
                db.execute(
                    f"CREATE TABLE IF NOT EXISTS {_TABLE} (path TEXT PRIMARY KEY, size INTEGER, "
                    "mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER, sha1 TEXT)"
                )
                with db:
                    for path in paths:
                        out.append(self._hash(db, Path(path)))
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise CacheError(f"Cannot use {self.db_path}: {exc}") from exc
        return out

    def _hash(self, db: sqlite3.Connection, path: Path) -> str:
        try:
            stat = path.stat()
        except OSError as exc:
            return f"{UNREADABLE}{type(exc).__name__}"
        name = str(path.resolve())
        seen = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
        trusted = bool(stat.st_ctime_ns and stat.st_ino)
        if trusted and (name, *seen) in self._memo:
            return self._memo[(name, *seen)]
        row = db.execute(
            f"SELECT size, mtime_ns, ctime_ns, inode, sha1 FROM {_TABLE} WHERE path = ?", (name,)
        ).fetchone()
        if trusted and row is not None and tuple(row[:4]) == seen:
            return row[4]
        try:
            digest = file_digest(path, "sha1")
        except OSError as exc:
            return f"{UNREADABLE}{type(exc).__name__}"
        if trusted and time.time_ns() - stat.st_ctime_ns >= SETTLE_NS:
            row = (name, *seen, digest)
            db.execute(f"INSERT OR REPLACE INTO {_TABLE} VALUES (?, ?, ?, ?, ?, ?)", row)
            self._memo[(name, *seen)] = digest
        return digest
