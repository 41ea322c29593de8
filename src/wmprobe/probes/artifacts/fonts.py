"""Fonts for each script, shipped by PyPI packages that wmprobe depends on."""

from __future__ import annotations

import functools
from pathlib import Path

from PIL import ImageFont

from wmprobe.errors import FontUnavailableError

#: Font family names that wmprobe resolves itself; anything else is taken as a path to a font file.
FAMILIES = ("cjk", "devanagari", "serif")

_PACKAGES = {
    "cjk": "cvttf-notosanscjk-regular",
    "devanagari": "fontpkg-noto-sans-devanagari",
    "serif": "fontpkg-noto-serif",
}


def font_path(family: str) -> Path:
    """The file of a named font family (``cjk``, ``devanagari``, ``serif``) or of a font path."""
    try:
        if family == "cjk":
            from cvttf_NotoSansCJK_Regular import __file__ as pkg

            return Path(pkg).parent / "NotoSansCJKtc-Regular.otf"
        if family == "devanagari":
            from fontpkg_noto_sans_devanagari import ROOT

            return next((ROOT / "files").glob("NotoSansDevanagari*.ttf"))
        if family == "serif":
            from fontpkg_noto_serif import ROOT

            return ROOT / "files" / "NotoSerif[wdth,wght].ttf"
    except (ImportError, StopIteration) as exc:
        raise FontUnavailableError(
            f"The font family {family!r} is not installed. Install it with "
            f"`pip install {_PACKAGES[family]}` (a dependency of wmprobe)."
        ) from exc
    path = Path(family).expanduser()
    if not path.is_file():
        raise FontUnavailableError(
            f"Expected a font family among {FAMILIES} or a font file, but {family!r} is neither."
        )
    return path


@functools.lru_cache(maxsize=64)
def load_font(family: str, size: int) -> ImageFont.FreeTypeFont:
    """A FreeType font of ``size`` px, laid out with Raqm (shaping for Devanagari) when available.

    Variable fonts are set to their regular (400) weight.
    """
    path = font_path(family)
    layout = (
        ImageFont.Layout.RAQM
        if ImageFont.core.HAVE_RAQM  # type: ignore[attr-defined]
        else ImageFont.Layout.BASIC
    )
    if family == "devanagari" and layout != ImageFont.Layout.RAQM:
        raise FontUnavailableError(
            "Devanagari needs text shaping, but this Pillow has no Raqm layout engine; "
            "install a Pillow wheel from PyPI (they bundle libraqm)."
        )
    font = ImageFont.truetype(str(path), size, layout_engine=layout)
    try:
        axes = font.get_variation_axes()
    except OSError:  # not a variable font
        return font
    values = [400.0 if _axis_name(a) in ("weight", "wght") else float(a["default"]) for a in axes]
    font.set_variation_by_axes(values)
    return font


def _axis_name(axis: dict) -> str:
    name = axis["name"]
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    return str(name).strip().lower()
