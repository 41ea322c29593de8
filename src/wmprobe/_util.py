"""Small helpers that several stages share, low in the stack (no torch, no pandas): atomic writes,
file digests and "did you mean" hints.

Example:
    >>> did_you_mean("resnet5O", ["resnet50", "resnet18", "vgg16"])
    ' Did you mean resnet50, resnet18?'
    >>> did_you_mean("elvish", ["chinese", "latin"])
    ''
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["atomic_write", "did_you_mean", "file_digest", "file_digests", "temporary_name"]

_CHUNK = 1 << 20


def file_digests(path: str | Path, algorithms: Iterable[str] = ("sha256",)) -> tuple[str, ...]:
    """Hex digests of a file's bytes, one per hashlib algorithm, from one chunked read; an
    ``OSError`` for anything but a regular file (a FIFO or a device is never read).

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile(delete=False) as fh:
        ...     _ = fh.write(b"abc")
        >>> [d[:8] for d in file_digests(fh.name, ("sha256", "md5"))]
        ['ba7816bf', '90015098']
    """
    hashes = [hashlib.new(name, usedforsecurity=False) for name in algorithms]
    # O_NONBLOCK: a FIFO put in the file's place is refused below instead of blocking the open
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        while block := fh.read(_CHUNK):
            for h in hashes:
                h.update(block)
    return tuple(h.hexdigest() for h in hashes)


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes (sha256 unless ``algorithm`` names another)."""
    return file_digests(path, (algorithm,))[0]


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    """`` Did you mean a, b?``: up to three close matches of ``name`` among ``known``, or ``""``.

    Meant to sit between an "Unknown X 'name'." sentence and the command that lists the X's.
    """
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=cutoff)
    return f" Did you mean {', '.join(close)}?" if close else ""


def temporary_name(path: str | Path) -> Path:
    """Where :func:`atomic_write` puts ``path``'s bytes before the rename: a hidden sibling file
    named after the file and this process (two processes never share one)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write(path: str | Path, data: str | bytes | Callable[[Path], object]) -> Path:
    """Write ``path`` whole or not at all: into a temporary sibling, then one atomic rename.

    ``data`` is text (UTF-8), bytes, or a function that writes the file it is given (e.g.
    ``lambda p: frame.to_parquet(p)``). A reader never sees a half-written file; a process
    killed while writing leaves at most its temporary file behind, never a partial ``path``.
    On an error the temporary file is removed and the error propagates.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "a.txt"
        >>> atomic_write(target, "done").read_text()
        'done'
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        elif isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            data(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
