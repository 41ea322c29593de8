"""Ready-made probe images (a user's own, or the paper's published sets) as a scenario.

A probe file is paired with the clean image of the same relative path stem: ``a/x.png`` with
``a/x.JPEG``. A folder written by ``wmprobe generate`` (with ``manifest.jsonl`` and ``probes/``)
is read from its ``probes/`` folder, and the manifest supplies each probe's text and box.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from wmprobe._util import file_digest
from wmprobe.errors import ImageFolderError, ProbeFolderError
from wmprobe.probes.artifacts import Drawn, NullArtifact
from wmprobe.probes.images import IMAGE_SUFFIXES, image_id_of, list_image_files, load_frame
from wmprobe.probes.manifest import MANIFEST_NAME, read_manifest
from wmprobe.probes.scenario import DRAW_VERSION, Scenario, _digest, check_jpeg_quality

#: The folder of probe images inside a folder written by ``wmprobe generate``.
PROBES_DIR = "probes"


@dataclass(frozen=True)
class FolderScenario(Scenario):
    """Probe images read from ``folder`` instead of drawn; ``artifact`` is unused (null).

    The probe is brought to the frame as the clean image is (shorter side, centre crop), and
    re-encoded only with ``jpeg_probe_quality``. Seeds do not apply.

    Example:
        >>> sc = FolderScenario.from_path("runs/chinese_probes")  # doctest: +SKIP
        >>> sc.missing(["n01440764_tench"])  # doctest: +SKIP
        []
    """

    folder: Path | None = None

    def __post_init__(self) -> None:
        if not self.name.startswith("folder:"):
            raise ProbeFolderError(
                f"A folder scenario's name starts with 'folder:', not {self.name!r}"
            )
        check_jpeg_quality(self.jpeg_probe_quality)
        if self.folder is None or not Path(self.folder).is_dir():
            raise ProbeFolderError(
                f"The probe folder {str(self.folder)!r} does not exist or is not a folder."
            )

    @classmethod
    def from_path(cls, path: str | Path) -> FolderScenario:
        """The scenario ``folder:PATH`` for a folder of probe images."""
        folder = Path(path).expanduser()
        if not str(path).strip() or not folder.is_dir():
            raise ProbeFolderError(
                f"The probe folder {str(path)!r} does not exist or is not a folder "
                f"(use folder:PATH with a folder of probe images)."
            )
        return cls(name=f"folder:{path}", artifact=NullArtifact(), folder=folder.resolve())

    @functools.cached_property
    def image_root(self) -> Path:
        """Where the probe images are: ``probes/`` in a generated folder, else the folder."""
        root = Path(self.folder)  # type: ignore[arg-type]
        generated = (root / MANIFEST_NAME).is_file() and (root / PROBES_DIR).is_dir()
        return root / PROBES_DIR if generated else root

    @functools.cached_property
    def files(self) -> dict[str, Path]:
        """Probe file by image id (relative path without suffix)."""
        root = self.image_root
        try:  # links to folders followed, FIFOs and devices left out, one file per image id
            paths, _ = list_image_files(root)
        except ImageFolderError as exc:
            raise ProbeFolderError(f"Probe folder {str(root)!r}: {exc}") from exc
        found = {image_id_of(p, root): p for p in paths if p.is_file()}
        if not found:
            raise ProbeFolderError(
                f"The probe folder {str(root)!r} holds no image files "
                f"({', '.join(IMAGE_SUFFIXES)})."
            )
        return found

    @functools.cached_property
    def notes(self) -> dict[str, tuple[str, Any]]:
        """Text and box per image id from a generated folder's manifest (else empty)."""
        path = Path(self.folder) / MANIFEST_NAME  # type: ignore[arg-type]
        if self.image_root == Path(self.folder) or not path.is_file():  # type: ignore[arg-type]
            return {}
        return {row.image_id: (row.text, row.bbox) for row in read_manifest(path)}

    def missing(self, image_ids: Iterable[str]) -> list[str]:
        """The clean image ids that have no probe in the folder."""
        return [i for i in image_ids if i not in self.files]

    def unpaired(self, image_ids: Iterable[str]) -> list[str]:
        """The probe ids that have no clean image among ``image_ids``."""
        ids = set(image_ids)
        return [i for i in self.files if i not in ids]

    def draw(self, frame: Image.Image, *, seed: int, image_id: str) -> Drawn:
        """The probe of ``image_id`` from the folder, on the frame's size (``seed`` is unused)."""
        path = self.files.get(image_id)
        if path is None:
            raise ProbeFolderError(f"No probe for {image_id!r} in {str(self.image_root)!r}.")
        probe = load_frame(path, size=max(frame.size), jpeg_quality=self.jpeg_probe_quality)
        if probe.size != frame.size:
            probe = probe.resize(frame.size, Image.Resampling.BILINEAR)
        text, bbox = self.notes.get(image_id, ("", None))
        return Drawn(image=probe, text=text, bbox=bbox)

    def to_dict(self) -> dict[str, Any]:
        """The name, the folder (full path) and the JPEG quality: :meth:`from_dict` reads it."""
        return {
            "name": self.name,
            "folder": str(Path(self.folder).resolve()),  # type: ignore[arg-type]
            "jpeg_probe_quality": self.jpeg_probe_quality,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> FolderScenario:
        """The folder scenario that :meth:`to_dict` wrote (same files, same ``spec_hash``)."""
        return FolderScenario(
            name=str(data["name"]),
            artifact=NullArtifact(),
            folder=Path(str(data["folder"])),
            jpeg_probe_quality=data.get("jpeg_probe_quality"),
        )

    def spec_hash(self) -> str:
        """A digest of the probe files: their relative paths and bytes (computed once)."""
        return self._content_hash

    @functools.cached_property
    def _content_hash(self) -> str:
        files = hashlib.sha256()
        for image_id, path in sorted(self.files.items()):
            rel = path.relative_to(self.image_root).as_posix()
            files.update(f"{image_id}\x00{rel}\x00{file_digest(path)}\n".encode())
        payload = {
            "draw_version": DRAW_VERSION,
            "kind": "folder",
            "jpeg_probe_quality": self.jpeg_probe_quality,
            "files": files.hexdigest(),
        }
        return _digest(payload)

    def describe(self) -> str:
        text = f"probe images read from {self.image_root}"
        if self.jpeg_probe_quality is not None:
            text += f"; JPEG-encoded at quality {self.jpeg_probe_quality}"
        return text

    def check_ready(self) -> None:
        self.files  # noqa: B018 - lists the folder now, so that problems show before any work
