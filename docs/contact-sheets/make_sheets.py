"""Redraw the contact sheets in this folder: every preset, its placebos, the null and JPEG probe.

    PYTHONPATH=src python docs/contact-sheets/make_sheets.py [IMAGES]

IMAGES defaults to ../shared/data/imagenet-samples; three of its images, seed 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from wmprobe.probes.contact_sheet import contact_sheet
from wmprobe.probes.images import load_frame, scan_folder
from wmprobe.probes.scenario import resolve_scenarios

HERE = Path(__file__).resolve().parent
DEFAULT_IMAGES = HERE.parents[2] / "shared" / "data" / "imagenet-samples"
PICKS = (0, 417, 954)  # tench, and two images far from it in the sorted list
THUMB = 160


def _sheet(columns: list[str], frames, ids, extra=None) -> Image.Image:
    scenarios = resolve_scenarios([c for c in columns if c != "clean"])
    rows = []
    for frame, image_id in zip(frames, ids, strict=True):
        row = [frame] + [s.draw(frame, seed=0, image_id=image_id).image for s in scenarios]
        rows.append(row + ([extra(row)] if extra else []))
    titles = [c if i < 2 else "+" + c.split("+", 1)[1] for i, c in enumerate(columns)]
    titles += ["|jpeg - clean| x10"] if extra else []
    return contact_sheet(
        rows, captions=ids, titles=titles, thumb=THUMB, groups_per_line=1, palette=True
    )


def _jpeg_difference(row: list[Image.Image]) -> Image.Image:
    clean, jpeg = (np.asarray(im, dtype=np.int16) for im in (row[0], row[2]))
    return Image.fromarray(np.clip(np.abs(jpeg - clean) * 10, 0, 255).astype(np.uint8))


def main(images: Path) -> None:
    records = scan_folder(images).records
    picked = [records[i] for i in PICKS if i < len(records)]
    frames = [load_frame(r.path) for r in picked]
    ids = [r.image_id for r in picked]
    for name in ("chinese", "latin", "hindi", "numerals", "imagenet_w"):
        columns = ["clean", name] + [f"{name}+placebo_{f}" for f in ("box", "noise", "blur")]
        _sheet(columns, frames, ids).save(HERE / f"{name}.png", optimize=True)
    null = _sheet(["clean", "null", "null+jpeg_probe"], frames, ids, extra=_jpeg_difference)
    null.save(HERE / "null.png", optimize=True)
    for path in sorted(HERE.glob("*.png")):
        print(f"{path.name}: {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_IMAGES)
