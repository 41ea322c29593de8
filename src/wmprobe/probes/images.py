"""Reading baseline images: listing a folder, ImageNet labels, and the paper's 224x224 frame."""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from PIL import Image, ImageOps

from wmprobe.errors import (
    BadImageError,
    ImageChangedError,
    ImageFolderError,
    InvalidArgumentError,
)

#: File name endings read as images (case-insensitive).
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff")

#: ImageNet sample images that already carry a Chinese watermark; the paper leaves them out.
KNOWN_WATERMARKED = ("n01667778_terrapin", "n02971356_carton")

#: Images with a shorter side under this many pixels are skipped (too small to carry text).
MIN_SIDE = 32

#: The most pixels of one image that are decoded (after JPEG draft scaling): 128 MP, 384 MiB as
#: RGB (a 10000 x 10000 px scan still works). Larger images are a counted skip before decoding.
#: PIL's own decompression-bomb error (at twice ``Image.MAX_IMAGE_PIXELS``, 179 MP) is a second,
#: outer limit; its warning below that is silenced since this one is the limit.
MAX_DECODED_PIXELS = 128_000_000

#: An image whose resized whole would exceed this many frames is cropped before it is resized.
CROP_FIRST_FRAMES = 16

#: The side of the square frame on which artifacts are drawn (the paper's 224x224).
FRAME_SIZE = 224

_WNID = re.compile(r"^(n\d{8})_")


@functools.lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in class-index order."""
    text = resources.files("wmprobe").joinpath("data/imagenet_wnids.txt").read_text()
    return tuple(text.split())


def imagenet_label(file_name: str) -> int:
    """The ImageNet class index of a file named ``<wnid>_...``, or -1.

    Example:
        >>> imagenet_label("n01440764_tench.JPEG"), imagenet_label("cat.png")
        (0, -1)
    """
    match = _WNID.match(file_name)
    if match is None:
        return -1
    return _wnid_index().get(match.group(1), -1)


@functools.lru_cache(maxsize=1)
def _wnid_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(imagenet_wnids())}


@dataclass(frozen=True)
class ImageRecord:
    """One baseline image: its path, a stable id (relative path without suffix) and its label."""

    path: Path
    image_id: str
    label: int = -1


@dataclass
class ImageSet:
    """The images of a folder that an audit uses, and those it left out (with the reason)."""

    root: Path
    records: list[ImageRecord]
    excluded: dict[str, str] = field(default_factory=dict)
    is_imagenet_samples: bool = False

    def __len__(self) -> int:
        return len(self.records)


def scan_folder(
    root: str | Path,
    *,
    keep_watermarked: bool = False,
    limit: int | None = None,
) -> ImageSet:
    """List the images under ``root`` (recursively, sorted), with ImageNet labels where known.

    A folder whose files are all named ``<wnid>_<name>``, as the ImageNet sample set, gets ImageNet
    class labels from the wnids. The known watermarked samples (:data:`KNOWN_WATERMARKED`) are left
    out by file name, in any folder, unless ``keep_watermarked``. Links to folders are followed
    (each folder once); things that are not regular files (FIFOs, devices) are left out with the
    reason, never opened. Two files with the same image id (``zz.jpg`` and ``zz.png``) are an error.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ImageFolderError(f"Image folder {str(root)!r} does not exist or is not a folder.")
    paths, not_regular = list_image_files(root)
    if not paths:
        raise ImageFolderError(
            f"Image folder {str(root)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})"
            + (f"; {len(not_regular)} entries so named are not regular files" * bool(not_regular))
            + "."
        )
    excluded = {image_id_of(p, root): why for p, why in not_regular.items()}
    labels = [imagenet_label(p.name) for p in paths]
    is_samples = bool(paths) and all(label >= 0 for label in labels)
    records = []
    for path, label in zip(paths, labels, strict=True):
        image_id = image_id_of(path, root)
        if not keep_watermarked and path.stem in KNOWN_WATERMARKED:
            excluded[image_id] = (
                "already carries a Chinese watermark (left out as in the paper; "
                "--keep-watermarked keeps it)"
            )
            continue
        records.append(ImageRecord(path=path, image_id=image_id, label=label))
    if limit is not None:
        if limit < 1:
            raise InvalidArgumentError(f"Expected argument `limit` to be >= 1 but got {limit}")
        records = records[:limit]
    return ImageSet(root=root, records=records, excluded=excluded, is_imagenet_samples=is_samples)


def image_id_of(path: Path, root: Path) -> str:
    """An image's id: its path relative to ``root`` without the suffix (``a/b`` for a/b.png)."""
    return path.relative_to(root).with_suffix("").as_posix()


def list_image_files(root: Path) -> tuple[list[Path], dict[Path, str]]:
    """The image files under ``root`` (sorted) and the image-named things that are not files.

    Links to folders are followed, each folder once (a link back up does not loop). Broken links
    and unreadable files are listed: reading them fails later as a counted skip. FIFOs, devices and
    sockets (or links to them) named like images are returned apart with the reason, since opening
    one can block forever. Two files with one image id raise :class:`ImageFolderError`.
    """
    files: list[Path] = []
    not_regular: dict[Path, str] = {}
    seen: set[tuple[int, int]] = set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        for name in names:
            path = Path(folder) / name
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            kind = _not_regular(path)
            if kind is None:
                files.append(path)
            else:
                not_regular[path] = f"not a regular file ({kind}); not read"
    files.sort()
    by_id: dict[str, Path] = {}
    for path in files:
        image_id = image_id_of(path, root)
        if image_id in by_id:
            raise ImageFolderError(
                f"Two files have the image id {image_id!r}: {by_id[image_id]} and {path}. "
                "Image ids are paths without the suffix; rename or remove one of them."
            )
        by_id[image_id] = path
    return files, not_regular


def _not_regular(path: Path) -> str | None:
    """None for a regular file (or one that cannot be stat'ed); else what it is."""
    try:
        mode = path.stat().st_mode
    except OSError:  # a broken link or no permission: a counted skip when it is read
        return None
    return None if stat.S_ISREG(mode) else _file_kind(mode)


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a file"


def load_frame(
    path: str | Path,
    size: int = FRAME_SIZE,
    *,
    jpeg_quality: int | None = None,
    sha1: str | None = None,
) -> Image.Image:
    """Read an image as RGB and bring it to ``size`` x ``size``: shorter side resized, centre crop.

    The EXIF orientation is applied first. Transparent images are laid on black. Images whose
    shorter side is under ``MIN_SIDE`` px raise ``BadImageError``; very large JPEGs are decoded at
    a reduced scale (still at least 4x the frame). With ``jpeg_quality`` the frame is then
    JPEG-encoded at that quality and decoded (as the clean side of a both-sides re-encoding:
    probes are drawn on the frame *before* this step and re-encoded alike, see
    :func:`jpeg_roundtrip`). With ``sha1``, the bytes read are those decoded, and they must have
    that sha1 (else ``ImageChangedError``).
    """
    frame = _frame(path, size, sha1)
    return frame if jpeg_quality is None else jpeg_roundtrip(frame, jpeg_quality)


def jpeg_roundtrip(image: Image.Image, quality: int) -> Image.Image:
    """``image`` encoded as JPEG at ``quality`` (1-95; PIL's default is 75) and decoded, as RGB.

    Other encoder settings are PIL's defaults (4:2:0 chroma subsampling, no optimisation), so
    equal inputs give equal outputs.

    Example:
        >>> im = jpeg_roundtrip(Image.new("RGB", (16, 16), (200, 30, 30)), 75)
        >>> im.size, im.mode
        ((16, 16), 'RGB')
    """
    check_jpeg_quality(quality)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def check_jpeg_quality(quality: object, name: str = "jpeg_quality") -> int:
    """``quality`` if it is an integer JPEG quality in [1, 95]; else InvalidArgumentError.

    Example:
        >>> check_jpeg_quality(75)
        75
        >>> check_jpeg_quality(100)
        Traceback (most recent call last):
        wmprobe.errors.InvalidArgumentError: Expected argument `jpeg_quality` ... but got 100
    """
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
        raise InvalidArgumentError(
            f"Expected argument `{name}` to be an integer in [1, 95] but got {quality!r}"
        )
    return quality


def open_regular(path: str | Path) -> io.BufferedReader:
    """``path`` opened for reading if it is a regular file; else :class:`BadImageError`.

    The open does not block (a FIFO would wait for a writer) and the check is made on the open
    file, so a link to ``/dev/zero`` or a FIFO is refused at once, not read forever.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise BadImageError(f"{Path(path).name} is not a regular file ({_file_kind(mode)})")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _frame(path: str | Path, size: int, sha1: str | None = None) -> Image.Image:
    if sha1 is None:
        with open_regular(path) as fh:
            return _decode(fh, size)
    try:
        with open_regular(path) as fh:
            data = fh.read()
    except (OSError, BadImageError) as exc:
        raise ImageChangedError(
            f"{path} was read when it was hashed for the cache key and cannot be read now "
            f"({type(exc).__name__}: {exc}){_CHANGED_WHY}"
        ) from exc
    if (found := hashlib.sha1(data).hexdigest()) != sha1:
        raise ImageChangedError(
            f"{path} is not the file that was hashed for the cache key (sha1 {found[:12]}, not "
            f"{sha1[:12]}){_CHANGED_WHY}"
        )
    return _decode(io.BytesIO(data), size)


_CHANGED_WHY = (
    ": it changed during the run, or a Ray worker does not see the same file at this path (mount "
    "the same folder at the same path on every node). Run again to hash it anew."
)


def _decode(source, size: int) -> Image.Image:
    with warnings.catch_warnings():
        # The pixel budget below is the limit; over twice PIL's own, open() raises instead.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(source) as im:
            if min(im.size) < MIN_SIDE:
                raise BadImageError(
                    f"image is {im.size[0]}x{im.size[1]} px, under {MIN_SIDE} px a side"
                )
            if im.format == "JPEG" and min(im.size) >= 8 * size:
                im.draft("RGB", (4 * size, 4 * size))  # decoded at 1/2-1/8 scale
            width, height = im.size
            if width * height > MAX_DECODED_PIXELS:
                raise BadImageError(
                    f"image is {width}x{height} px ({width * height / 1e6:.0f} MP), over the "
                    f"{MAX_DECODED_PIXELS / 1e6:.0f} MP wmprobe decodes; downscale it"
                )
            ImageOps.exif_transpose(im, in_place=True)  # no copy when there is nothing to turn
            return _centre_frame(im, size)


def _centre_frame(im: Image.Image, size: int) -> Image.Image:
    """The shorter side resized to ``size`` and the centre ``size`` x ``size`` cut out.

    When the whole image resized would exceed :data:`CROP_FIRST_FRAMES` frames (a 32 x 100000 px
    strip would be 224 x 700000 px), only the part the frame needs (plus the filter's reach) is
    converted and resampled: memory stays that of the decoded image. Pixels then match the
    resize-whole-and-crop path up to 1 level in a few pixels (PIL rounds the box's offsets);
    every other image takes that path, so its frame is exactly what earlier versions made.
    """
    width, height = im.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    if new_w * new_h <= CROP_FIRST_FRAMES * size * size:
        rgb = im if im.mode == "RGB" else _to_rgb(im)
        resized = rgb.resize((new_w, new_h), Image.Resampling.BILINEAR)
        return resized.crop((left, top, left + size, top + size))
    sx, sy = width / new_w, height / new_h  # source px per frame px
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    # bilinear reads up to max(1, scale) px beyond the box; one more for rounding
    mx, my = math.ceil(max(sx, 1.0)) + 1, math.ceil(max(sy, 1.0)) + 1
    region = (
        max(0, math.floor(box[0]) - mx),
        max(0, math.floor(box[1]) - my),
        min(width, math.ceil(box[2]) + mx),
        min(height, math.ceil(box[3]) + my),
    )
    part = im.crop(region)
    rgb = part if part.mode == "RGB" else _to_rgb(part)
    inner = (box[0] - region[0], box[1] - region[1], box[2] - region[0], box[3] - region[1])
    return rgb.resize((size, size), Image.Resampling.BILINEAR, box=inner)


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im.copy()
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: scale to 8 bit instead of clipping.
        im = im.convert("I").point(lambda v: v / 256).convert("L")
    if "A" in im.mode or im.mode == "P" and "transparency" in im.info:
        rgba = im.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return im.convert("RGB")
