"""Small helpers that every stage uses, defined once and low in the stack (no torch, no pandas)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "temporary_name"]


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
