"""Downloads that the user asks for: checksum-verified, atomic, and extracted without traversal.

Nothing in wmprobe touches the network unless the user asked for a download (``wmprobe download``,
``--download-weights``).
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from wmprobe._util import file_digests
from wmprobe.errors import DatasetDownloadError, UnsafeArchiveError


@dataclass(frozen=True)
class Source:
    """A downloadable data set: where it is and the checksum its bytes must have.

    Attributes:
        name: the name ``wmprobe download`` takes.
        url: where the archive is.
        filename: the archive's file name.
        sha256: the archive's SHA-256, when pinned.
        md5: the archive's MD5, where only that is published (checked in addition).
        folder: the folder the archive unpacks to.
    """

    name: str
    url: str
    filename: str
    sha256: str | None = None
    md5: str | None = None
    folder: str = ""


SOURCES: dict[str, Source] = {
    "caltech256": Source(
        name="caltech256",
        url="https://data.caltech.edu/records/nyy15-4j048/files/256_ObjectCategories.tar",
        filename="256_ObjectCategories.tar",
        md5="67b4f42ca05d46448c6bb8ecd2220f6d",  # as published with torchvision's Caltech256
        folder="256_ObjectCategories",
    ),
    "imagenet-samples": Source(
        name="imagenet-samples",
        url="https://github.com/EliSchwartz/imagenet-sample-images/archive/refs/heads/master.zip",
        filename="imagenet-sample-images-master.zip",
        folder="imagenet-sample-images-master",
    ),
}


def fetch(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None,
    md5: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest``, verify its checksum, and only then move it into place.

    A file already at ``dest`` with the right checksum is reused. At least one checksum is
    required; the SHA-256 of every download is checked when given.
    """
    if not sha256 and not md5:
        raise DatasetDownloadError(
            f"Refusing to download {url} without a checksum to verify; pass its SHA-256 "
            "(`--sha256 HEX`)."
        )
    dest = Path(dest)
    if dest.is_file() and _matches(dest, sha256, md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, suffix=".part", delete=False) as tmp:
        part = Path(tmp.name)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                shutil.copyfileobj(response, tmp, 1 << 20)
        except (urllib.error.URLError, OSError) as exc:
            tmp.close()
            part.unlink(missing_ok=True)
            raise DatasetDownloadError(f"Could not download {url}: {exc}") from exc
    if not _matches(part, sha256, md5):
        got_sha, got_md5 = file_digests(part, ("sha256", "md5"))
        part.unlink(missing_ok=True)
        raise DatasetDownloadError(
            f"The download from {url} has SHA-256 {got_sha} (MD5 {got_md5}), not the expected "
            f"{sha256 or md5}; it was deleted."
        )
    part.replace(dest)
    return dest


def _matches(path: Path, sha256: str | None, md5: str | None) -> bool:
    got_sha, got_md5 = file_digests(path, ("sha256", "md5"))
    return (not sha256 or got_sha == sha256.lower()) and (not md5 or got_md5 == md5.lower())


def _check_member(name: str, dest: Path) -> None:
    pure = PurePosixPath(name.replace("\\", "/"))
    target = (dest / pure).resolve()
    if pure.is_absolute() or ".." in pure.parts or not target.is_relative_to(dest.resolve()):
        raise UnsafeArchiveError(
            f"Archive member {name!r} would be written outside {dest}; nothing was extracted."
        )


def safe_extract(archive: str | Path, dest: str | Path) -> Path:
    """Extract a tar or zip archive into ``dest``, refusing members that escape it.

    Absolute paths, ``..`` components, links and device files are refused before anything is
    written.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _check_member(info.filename, dest)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UnsafeArchiveError(f"Archive member {info.filename!r} is a symlink.")
            zf.extractall(dest)
        return dest
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for member in members:
                _check_member(member.name, dest)
                if not (member.isfile() or member.isdir()):
                    raise UnsafeArchiveError(
                        f"Archive member {member.name!r} is a link or device; nothing extracted."
                    )
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: belt and braces
                tf.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - older Pythons; the checks above already ran
                tf.extractall(dest, members=members)
        return dest
    raise DatasetDownloadError(f"{archive} is neither a zip nor a tar archive.")


def download_dataset(
    name: str,
    dest: str | Path,
    *,
    url: str | None = None,
    sha256: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download a known data set (``caltech256``, ``imagenet-samples``) and extract it safely.

    Returns the extracted folder. ``url`` overrides the source (a mirror); ``sha256`` pins the
    archive's checksum (required where wmprobe has none pinned).
    """
    if name not in SOURCES:
        raise DatasetDownloadError(f"Unknown data set {name!r}; known: {', '.join(SOURCES)}.")
    src = SOURCES[name]
    dest = Path(dest)
    archive = fetch(
        url or src.url,
        dest / src.filename,
        sha256=sha256 or src.sha256,
        md5=None if sha256 else src.md5,
        timeout=timeout,
    )
    safe_extract(archive, dest)
    return dest / src.folder if src.folder else dest
