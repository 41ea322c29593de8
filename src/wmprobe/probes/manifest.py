"""The manifest of a generated probe set: one JSON line per probe image, and reading it back."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from wmprobe._util import atomic_write
from wmprobe.errors import ProbeFolderError
from wmprobe.probes.artifacts import BBox

#: The manifest's file name in a probe folder.
MANIFEST_NAME = "manifest.jsonl"


@dataclass(frozen=True)
class ManifestRow:
    """One probe image: where it came from, what was drawn where, and how to draw it again.

    ``probe_file`` is relative to the probe folder; ``bbox`` is ``(left, top, right, bottom)`` on
    the 224x224 frame or None (nothing drawn). (seed, image_id, stream) and the scenario spec
    whose hash is ``spec_hash`` redraw the identical pixels.
    """

    source: str
    image_id: str
    scenario: str
    stream: str
    text: str
    bbox: BBox | None
    seed: int
    spec_hash: str
    probe_file: str


def write_manifest(path: str | Path, rows: Iterable[ManifestRow]) -> Path:
    """Write ``rows`` as JSON lines (UTF-8, one object per line) to ``path``."""
    lines = (json.dumps(dataclasses.asdict(row), ensure_ascii=False) + "\n" for row in rows)
    return atomic_write(path, "".join(lines))


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """The rows of a manifest written by :func:`write_manifest`.

    Example:
        >>> rows = read_manifest("probes/chinese/manifest.jsonl")  # doctest: +SKIP
        >>> rows[0].text  # doctest: +SKIP
        '的人了国这中我'
    """
    path = Path(path)
    names = {f.name for f in dataclasses.fields(ManifestRow)}
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ProbeFolderError(f"The manifest {str(path)!r} cannot be read: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if set(record) != names:
                raise ValueError(f"expected the keys {sorted(names)}, got {sorted(record)}")
            bbox = record["bbox"]
            record["bbox"] = None if bbox is None else (bbox[0], bbox[1], bbox[2], bbox[3])
            rows.append(ManifestRow(**record))
        except (ValueError, TypeError, IndexError) as exc:
            raise ProbeFolderError(f"{path}:{number}: not a manifest row ({exc}).") from exc
    return rows
