"""Reading baseline images: listing a folder, ImageNet labels, and the paper's 224x224 frame."""

from __future__ import annotations

import functools
import io
import re
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from PIL import Image, ImageOps

from wmprobe.errors import BadImageError, ImageFolderError, InvalidArgumentError

#: File name endings read as images (case-insensitive).
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff")

#: ImageNet sample images that already carry a Chinese watermark; the paper leaves them out.
KNOWN_WATERMARKED = ("n01667778_terrapin", "n02971356_carton")

#: Images with a shorter side under this many pixels are skipped (too small to carry text).
MIN_SIDE = 32

#: The side of the square frame on which artifacts are drawn (the paper's 224x224).
FRAME_SIZE = 224

_WNID = re.compile(r"^(n\d{8})_")


@functools.lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in class-index order."""
    text = resources.files("wmprobe").joinpath("data/imagenet_wnids.txt").read_text()
    return tuple(text.split())


def imagenet_label(file_name: str) -> int:
    """The ImageNet class index of a file named ``<wnid>_...``, or -1."""
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
    class labels from the wnids, and its known watermarked images are left out unless
    ``keep_watermarked``.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ImageFolderError(f"Image folder {str(root)!r} does not exist or is not a folder.")
    # Broken links and unreadable files are listed too: reading them fails later as a counted skip.
    paths = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()
    )
    if not paths:
        raise ImageFolderError(
            f"Image folder {str(root)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})."
        )
    labels = [imagenet_label(p.name) for p in paths]
    is_samples = all(label >= 0 for label in labels)
    records = []
    excluded: dict[str, str] = {}
    for path, label in zip(paths, labels, strict=True):
        image_id = path.relative_to(root).with_suffix("").as_posix()
        if is_samples and not keep_watermarked and path.stem in KNOWN_WATERMARKED:
            excluded[image_id] = "already carries a Chinese watermark (left out as in the paper)"
            continue
        records.append(ImageRecord(path=path, image_id=image_id, label=label))
    if limit is not None:
        if limit < 1:
            raise InvalidArgumentError(f"Expected argument `limit` to be >= 1 but got {limit}")
        records = records[:limit]
    return ImageSet(root=root, records=records, excluded=excluded, is_imagenet_samples=is_samples)


def load_frame(
    path: str | Path, size: int = FRAME_SIZE, *, jpeg_quality: int | None = None
) -> Image.Image:
    """Read an image as RGB and bring it to ``size`` x ``size``: shorter side resized, centre crop.

    The EXIF orientation is applied first. Transparent images are laid on black. Images whose
    shorter side is under ``MIN_SIDE`` px raise ``BadImageError``; very large JPEGs are decoded at
    a reduced scale (still at least 4x the frame). With ``jpeg_quality`` the frame is then
    JPEG-encoded at that quality and decoded (as the clean side of a both-sides re-encoding:
    probes are drawn on the frame *before* this step and re-encoded alike, see
    :func:`jpeg_roundtrip`).
    """
    frame = _frame(path, size)
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
    """``quality`` if it is an integer JPEG quality in [1, 95]; else InvalidArgumentError."""
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
        raise InvalidArgumentError(
            f"Expected argument `{name}` to be an integer in [1, 95] but got {quality!r}"
        )
    return quality


def _frame(path: str | Path, size: int) -> Image.Image:
    with warnings.catch_warnings():
        # Large images are handled on purpose; over twice PIL's limit, open() raises instead.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(path)
    with im:
        if min(im.size) < MIN_SIDE:
            raise BadImageError(
                f"image is {im.size[0]}x{im.size[1]} px, under {MIN_SIDE} px a side"
            )
        if im.format == "JPEG" and min(im.size) >= 8 * size:
            im.draft("RGB", (4 * size, 4 * size))
        ImageOps.exif_transpose(im, in_place=True)  # no copy when there is nothing to turn
        rgb = im if im.mode == "RGB" else _to_rgb(im)
        width, height = rgb.size
        scale = size / min(width, height)
        new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
        # resize makes a new image, so nothing is read from ``im`` once it is closed
        resized = rgb.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return resized.crop((left, top, left + size, top + size))


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
