"""What a scan writes: the score tables, the flagged list, a contact sheet and one HTML page."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

from wmprobe.probes.artifacts.fonts import load_font
from wmprobe.reporting.html import Section, esc, page_html

THUMB = 160


def thumbnail(
    path: str, box: tuple[float, float, float, float] | None, side: int = THUMB
) -> Image.Image:
    """The whole image squeezed to ``side`` px, the region that scored outlined in red."""
    with Image.open(path) as im:
        frame = im.convert("RGB").resize((side, side), Image.Resampling.BILINEAR)
    if box is not None and tuple(box) != (0.0, 0.0, 1.0, 1.0):
        x0, y0, x1, y1 = (round(v * side) for v in box)
        ImageDraw.Draw(frame).rectangle((x0, y0, x1 - 1, y1 - 1), outline=(255, 0, 0), width=2)
    return frame


def _box(row) -> tuple[float, float, float, float]:
    return (row.box_x0, row.box_y0, row.box_x1, row.box_y1)


def contact_sheet(table: pd.DataFrame, top: int, threshold: float, columns: int = 8) -> Image.Image:
    """The ``top`` highest-scoring images with rank, score and region; flagged ones framed red."""
    rows = table.head(top)
    n = max(1, len(rows))
    cols = min(columns, n)
    lines = (n + cols - 1) // cols
    cell_h = THUMB + 30
    sheet = Image.new("RGB", (cols * THUMB, lines * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = load_font("serif", 11)
    for i, row in enumerate(rows.itertuples(index=False)):
        x, y = (i % cols) * THUMB, (i // cols) * cell_h
        sheet.paste(thumbnail(row.path, _box(row)), (x, y))
        colour = (200, 0, 0) if row.flagged else (60, 60, 60)
        draw.text(
            (x + 3, y + THUMB + 1),
            f"#{row.rank} {row.score:.2f} {row.region}",
            fill=colour,
            font=font,
        )
        draw.text((x + 3, y + THUMB + 15), str(row.image_id)[-26:], fill=(90, 90, 90), font=font)
    return sheet


def _png(image: Image.Image, fmt: str = "JPEG") -> str:
    buf = io.BytesIO()
    image.save(buf, format=fmt, quality=80)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def page(table: pd.DataFrame, meta: dict, top: int, evaluation: dict | None) -> str:
    """The scan's page: the threshold and what it means, and a sortable table of the top rows."""
    fpr, threshold = meta["fpr"], meta["threshold"]
    det = meta["detector"]
    intro = (
        f"<p>{meta['scored']:,} images scored with the <b>{esc(det['kind'])}</b> detector on "
        f"{esc(det['model'])} ({esc(det['layer'])}, {det['input_size']} px); "
        f"{meta['flagged']:,} flagged, {meta['skipped']:,} unreadable (skipped.csv).</p>"
        f'<p class="note">Threshold {threshold:.4f}: the score above which {fpr:g} of '
        f"{meta['calibration_images']} held-out clean images lie, so about {fpr:.1%} of clean "
        "images are flagged by mistake (if those clean images are like yours). Scores are "
        "ranks, not probabilities. The red box marks the region that scored highest.</p>"
    )
    head = "".join(
        f'<th class="{c[1]}">{esc(c[0])}</th>'
        for c in (("rank", ""), ("image", "t"), ("score", ""), ("flagged", "t"), ("region", "t"),
                  ("family", "t"), ("path", "t"))
    )  # fmt: skip
    body = []
    for row in table.head(top).itertuples(index=False):
        img = _png(thumbnail(row.path, _box(row), 128))
        body.append(
            f'<tr><td data-v="{row.rank}">{row.rank}</td>'
            f'<td class="t"><img alt="{esc(row.image_id)}" src="data:image/jpeg;base64,{img}"></td>'
            f'<td data-v="{row.score!r}">{row.score:.4f}</td>'
            f'<td class="t">{"yes" if row.flagged else "no"}</td>'
            f'<td class="t">{esc(row.region)}</td>'
            f'<td class="t">{esc(row.family)}</td><td class="t l">{esc(row.path)}</td></tr>'
        )
    table_html = (
        f'<div class="wide"><table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
    sections = [Section("top", f"The top {min(top, len(table))} images", table_html)]
    if evaluation is not None:
        sections.append(Section("evaluation", "Against the labels", _evaluation_html(evaluation)))
    return page_html("wmprobe scan", intro, sections)


def _evaluation_html(ev: dict) -> str:
    keys = ("n", "positives", "auroc", "average_precision", "precision", "recall", "f1")
    cells = "".join(f"<tr><th class='t'>{k}</th><td>{esc(ev.get(k))}</td></tr>" for k in keys)
    return f"<table>{cells}</table><pre>{esc(ev.get('confusion'))}</pre>"


def write_outputs(result, meta: dict, *, top: int) -> None:
    """Write every file of the scan folder (see :func:`wmprobe.scanning.run.scan`)."""
    from wmprobe.scanning.run import write_json

    out: Path = result.out
    table = result.table
    table.to_parquet(out / "scores.parquet", index=False)
    table.to_csv(out / "scores.csv", index=False)
    flagged = table.loc[table["flagged"], "path"].tolist()
    (out / "flagged.txt").write_text("".join(f"{p}\n" for p in flagged))
    result.skipped.to_csv(out / "skipped.csv", index=False)
    if top:
        contact_sheet(table, top, result.threshold).save(out / "contact_sheet.png")
    if result.evaluation is not None:
        write_json(out / "evaluation.json", result.evaluation)
    (out / "index.html").write_text(page(table, meta, top, result.evaluation), encoding="utf-8")
    write_json(out / "scan.json", meta)
