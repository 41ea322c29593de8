"""The images of a folder, streamed: a recursive ``os.scandir`` walk that never lists them all.

Each directory is read entry by entry, and sub-directories are walked after the files of their
parent, in the order the file system gives (stable for an unchanged folder, so a resumed scan
meets the same images in the same order). Images are read whole (never cropped: marks sit in
corners) and resized to a square ``size`` x ``size`` frame.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from wmprobe.errors import BadImageError, ImageFolderError
from wmprobe.probes.images import IMAGE_SUFFIXES, MIN_SIDE, _to_rgb


def iter_images(root: str | Path) -> Iterator[str]:
    """Paths (str) of the image files under ``root``, recursively, streamed one at a time.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = Image.new("RGB", (40, 40)).save(os.path.join(d, "a.png"))
        ...     [os.path.basename(p) for p in iter_images(d)]
        ['a.png']
    """
    root = os.fspath(Path(root).expanduser())
    if not os.path.isdir(root):
        raise ImageFolderError(f"Image folder {root!r} does not exist or is not a folder.")
    pending = [root]
    while pending:
        folder = pending.pop()
        subfolders = []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        subfolders.append(entry.path)
                    elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                        yield entry.path
        except OSError as exc:
            warnings.warn(f"skipped unreadable folder {folder!r}: {exc}", stacklevel=2)
        pending.extend(sorted(subfolders, reverse=True))  # walked in name order


def read_square(path: str | Path, size: int) -> np.ndarray:
    """The whole image as uint8 ``[size, size, 3]`` (EXIF orientation applied, alpha on black).

    Raises ``BadImageError`` for files that cannot be read or are under ``MIN_SIDE`` px a side.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            if min(im.size) < MIN_SIDE:
                raise BadImageError(f"image is {im.size[0]}x{im.size[1]} px, under {MIN_SIDE}")
            if im.format == "JPEG" and min(im.size) >= 4 * size:
                im.draft("RGB", (2 * size, 2 * size))
            ImageOps.exif_transpose(im, in_place=True)
            rgb = im if im.mode == "RGB" else _to_rgb(im)
            frame = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    except BadImageError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadImageError(f"cannot read {os.fspath(path)!r}: {exc}") from exc
    return np.asarray(frame, dtype=np.uint8)
