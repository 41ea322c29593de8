"""Contact sheets: clean and probe images side by side, as in the paper's Figure 1."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw

from wmprobe.errors import InvalidArgumentError
from wmprobe.probes.artifacts import load_font

_CAPTION_PX = 12
_GAP = 4


def contact_sheet(
    rows: Sequence[Sequence[Image.Image]],
    *,
    captions: Sequence[str] | None = None,
    titles: Sequence[str] | None = None,
    thumb: int = 160,
    groups_per_line: int = 2,
    palette: bool = False,
) -> Image.Image:
    """A grid of image groups (e.g. clean, probe), ``groups_per_line`` groups side by side.

    Each group is one row of ``rows`` (equal lengths), its images ``thumb`` px square, with its
    caption (an image id) beneath; ``titles`` name the images of a group (``clean``, ``chinese``)
    above the first line. ``palette`` quantises to 256 colours (small files for docs).

    Example:
        >>> a, b = Image.new("RGB", (224, 224)), Image.new("RGB", (224, 224), "white")
        >>> contact_sheet([[a, b]], captions=["x"], titles=["clean", "probe"]).size
        (338, 206)
    """
    if not rows or not all(rows):
        raise InvalidArgumentError("Expected argument `rows` to hold at least one image group")
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise InvalidArgumentError("Expected every group of `rows` to hold as many images")
    if thumb < 16 or groups_per_line < 1:
        raise InvalidArgumentError(
            f"Expected `thumb` >= 16 and `groups_per_line` >= 1 but got {thumb}, {groups_per_line}"
        )
    per_line = min(groups_per_line, len(rows))
    lines = -(-len(rows) // per_line)
    group_w = width * thumb + (width - 1) * _GAP // 2
    cell_h = thumb + _CAPTION_PX + 6
    title_h = _CAPTION_PX + 8 if titles else 0
    sheet = Image.new(
        "RGB",
        (per_line * group_w + (per_line + 1) * _GAP * 2, title_h + lines * cell_h + _GAP * 2),
        "white",
    )
    draw = ImageDraw.Draw(sheet)
    font = load_font("serif", _CAPTION_PX)
    for g, group in enumerate(rows):
        line, col = divmod(g, per_line)
        x0 = _GAP * 2 + col * (group_w + _GAP * 2)
        y0 = _GAP + title_h + line * cell_h
        for i, image in enumerate(group):
            x = x0 + i * (thumb + _GAP // 2)
            small = image.convert("RGB").resize((thumb, thumb), Image.Resampling.LANCZOS)
            sheet.paste(small, (x, y0))
            if titles and line == 0:
                draw.text((x + 2, _GAP), _fit(titles[i], font, thumb), font=font, fill="black")
        if captions:
            caption = _fit(captions[g], font, group_w)
            draw.text((x0 + 2, y0 + thumb + 2), caption, font=font, fill=(60, 60, 60))
    if palette:
        colours = sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        return sheet.quantize(palette=colours, dither=Image.Dither.FLOYDSTEINBERG)
    return sheet


def _fit(text: str, font, width: int) -> str:
    """``text`` cut (with an ellipsis) to fit ``width`` px."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"
