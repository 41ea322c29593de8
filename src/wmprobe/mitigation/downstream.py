"""The downstream data set: an ImageFolder (or torchvision's Caltech-256) and its split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wmprobe.constants import CALTECH256_URL
from wmprobe.errors import DatasetDownloadError, ImageFolderError, MitigationError
from wmprobe.extraction.cache import default_cache_dir
from wmprobe.probes.images import ImageRecord, image_id_of, list_image_files

#: Names that ``--downstream`` takes besides a folder path.
NAMED_DATASETS = ("caltech256",)


@dataclass
class ImageFolderSet:
    """An ImageFolder: one sub-folder per class (sorted names are the class indices)."""

    root: Path
    classes: tuple[str, ...]
    records: list[ImageRecord]
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)


def scan_image_folder(root: str | Path) -> ImageFolderSet:
    """List an ImageFolder: class folders under ``root``, images searched recursively in each.

    Folders whose names start with a dot are ignored. A class folder without images is an error.
    Links to folders are followed; entries that are not regular files are left out (``excluded``,
    with the reason); two files with one image id are an error (see
    :func:`~wmprobe.probes.images.list_image_files`).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ImageFolderError(
            f"Downstream folder {str(root)!r} does not exist or is not a folder."
        )
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ImageFolderError(
            f"Downstream folder {str(root)!r} has no class sub-folders; expected the ImageFolder "
            "layout ROOT/<class>/<image>."
        )
    records: list[ImageRecord] = []
    excluded: dict[str, str] = {}
    empty = []
    for label, folder in enumerate(class_dirs):
        paths, not_regular = list_image_files(folder)
        excluded.update({image_id_of(p, root): why for p, why in not_regular.items()})
        if not paths:
            empty.append(folder.name)
        for p in paths:
            records.append(ImageRecord(path=p, image_id=image_id_of(p, root), label=label))
    if empty:
        raise ImageFolderError(
            f"Downstream folder {str(root)!r}: class folder(s) without images: "
            f"{', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}."
        )
    classes = tuple(p.name for p in class_dirs)
    return ImageFolderSet(root=root, classes=classes, records=records, excluded=excluded)


def check_measurable(
    labels: np.ndarray, classes: Sequence[str], *, test_fraction: float, where: str
) -> None:
    """Refuse downstream data on which a head cannot be measured: fewer than 2 classes, or a class
    that the split (:func:`split_indices`) leaves without a test image. The counts are in the
    message. ``labels`` index ``classes``; ``where`` names the data in the message.
    """
    if not 0.0 < test_fraction < 1.0:
        raise MitigationError(
            f"Expected argument `test_fraction` to be in (0, 1) but got {test_fraction}"
        )
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    present = [(classes[i], int(n)) for i, n in enumerate(counts) if n > 0]
    if len(present) < 2:
        listed = ", ".join(f"{c}: {n} images" for c, n in present) or "no images"
        raise MitigationError(
            f"{where} has {len(present)} class ({listed}); a head needs at least 2 classes to "
            "be trained and measured. Add class folders (ROOT/<class>/<image>)."
        )
    short = [(c, n) for c, n in present if _n_test(n, test_fraction) < 1]
    if short:
        raise MitigationError(
            f"{where}: every class needs at least one test image (at least 2 images with "
            f"test_fraction {test_fraction:g}), but {len(short)} of {len(present)} classes have "
            f"too few: {', '.join(f'{c}: {n}' for c, n in short[:10])}"
            + (" ..." if len(short) > 10 else "")
            + ". Add images or leave those classes out."
        )


def _n_test(n: int, test_fraction: float) -> int:
    """How many of a class's ``n`` images :func:`split_indices` puts in the test split."""
    n_test = int(round(test_fraction * n))
    return min(max(n_test, 1), n - 1) if n >= 2 else 0


def resolve_downstream(
    name_or_path: str | Path, *, data_dir: str | Path | None = None, download: bool = False
) -> Path:
    """The ImageFolder root of ``--downstream``: a folder path, or ``caltech256``.

    ``caltech256`` is torchvision's ``Caltech256`` under ``data_dir`` (default: the cache folder's
    ``datasets/``); it is downloaded only when ``download`` is true. A failed download raises
    :class:`DatasetDownloadError` saying how to get the data another way.
    """
    if str(name_or_path) not in NAMED_DATASETS:
        return Path(name_or_path).expanduser()
    base = Path(data_dir).expanduser() if data_dir else default_cache_dir() / "datasets"
    folder = base / "caltech256" / "256_ObjectCategories"
    if folder.is_dir():
        return folder
    if not download:
        raise ImageFolderError(
            f"Caltech-256 is not at {folder}. Add --download to fetch it with torchvision "
            f"(about 1.2 GB from {CALTECH256_URL}), or unpack 256_ObjectCategories.tar there."
        )
    from torchvision.datasets import Caltech256

    try:
        Caltech256(str(base), download=True)
    except Exception as exc:  # noqa: BLE001 - URLError, OSError, RuntimeError: all mean "no data"
        raise DatasetDownloadError(
            f"Could not download Caltech-256 into {base / 'caltech256'} "
            f"({type(exc).__name__}: {exc}). Without network, fetch {CALTECH256_URL} elsewhere "
            f"and unpack it so that {folder} exists, or pass any ImageFolder to --downstream."
        ) from exc
    if not folder.is_dir():
        raise DatasetDownloadError(f"The Caltech-256 download did not produce {folder}.")
    return folder


def split_indices(
    labels: np.ndarray, *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A stratified train/test split: in each class, ``round(test_fraction * n)`` images to test.

    Every class with at least 2 images keeps at least one image on each side; a class with one
    image goes to train. The draw depends only on ``seed`` and the labels. Returns sorted indices.
    """
    if not 0.0 < test_fraction < 1.0:
        raise MitigationError(
            f"Expected argument `test_fraction` to be in (0, 1) but got {test_fraction}"
        )
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(seed), 0x5D11])
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = _n_test(len(idx), test_fraction)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
