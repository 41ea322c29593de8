"""The report section "Where the units look": what ``wmprobe explain`` found for each model.

Reads ``<run>/explain/`` (written by :func:`wmprobe.explain`): the per-unit summary as a table,
and for the most sensitive units of each layer the heatmap overlays (clean frame, probe, and the
unit's map on each, with the drawn box). A run without it gets a note saying how to make it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from wmprobe._util import file_digest
from wmprobe.reporting.html import Section, esc, table_html
from wmprobe.study.analysis import Study

#: The method whose overlays are shown when several were run (the first present): LRP is
#: pixel-sharp, Grad-CAM as coarse as the last feature map.
METHOD_ORDER = ("lrp", "gradcam", "ig", "activation")

SUMMARY_COLUMNS = [
    "scenario", "layer", "unit", "class_name", "d", "method", "images", "mass", "clean_mass",
    "placebo_mass", "chance", "rank_accuracy", "hit_rate", "clean_hit_rate", "iou", "q",
    "localized", "q_placebo", "beyond_placebo",
]  # fmt: skip

CAPTION = (
    "Mass: share of the unit's positive relevance inside the box of the drawn mark (green), "
    "mean over the images that move the unit most; chance: box area / image area; clean: the "
    "same unit's map on the clean frame, measured in the same box. Localized: mass above both "
    "(one-sided Wilcoxon signed-rank tests over the images, the larger p, BH over units)."
)


def png_figure(path: Path) -> Figure:
    """A saved PNG as a figure at its own size (one figure pixel per image pixel)."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    fig = Figure(figsize=(pixels.shape[1] / 100, pixels.shape[0] / 100), dpi=100)
    FigureCanvasAgg(fig)
    fig.figimage(pixels, xo=0, yo=0, origin="upper")
    return fig


def localization_section(study: Study, writer, per_layer: int = 2) -> Section:
    """The section: per model, its explain summary table and ``per_layer`` overlays per layer.

    ``writer`` is the report's figure writer: ``add(key, title, fig, data, caption, photo)`` and
    ``note(text)`` (records what the report lacks and returns it as a paragraph).
    """
    note = writer.note
    body = ""
    for run in study.runs:
        folder = run.path / "explain"
        summary_file = folder / "localization_units.parquet"
        if not (folder / "explain.json").is_file():  # written last
            body += note(f"{run.name}: not explained yet (run `wmprobe explain {run.path}`).")
            continue
        made = json.loads((folder / "explain.json").read_text())
        if made.get("run_json_sha256") != file_digest(run.path / "run.json"):
            body += note(
                f"{run.name}: its explain/ folder belongs to an earlier audit of this folder; "
                f"run `wmprobe explain {run.path}` again."
            )
            continue
        summary = pd.read_parquet(summary_file)
        rows = pd.read_parquet(folder / "localization.parquet")
        if summary.empty:
            body += note(f"{run.name}: explain found no unit with a drawn box to score.")
            continue
        body += f"<h3>{esc(run.name)}</h3>"
        shown = [c for c in SUMMARY_COLUMNS if c in summary.columns]
        body += table_html(summary[shown], scroll=True)
        rank = {m: i for i, m in enumerate(METHOD_ORDER)}
        for (scenario, layer), group in summary.groupby(["scenario", "layer"], sort=False):
            method = min(group["method"].unique(), key=lambda m: rank.get(m, len(rank)))
            top = group[group["method"] == method].sort_values("d", ascending=False)
            for unit in top.head(per_layer).itertuples():
                png = folder / "overlays" / f"{scenario}__{layer}__{unit.unit}__{method}.png"
                if not png.is_file():
                    continue
                data = rows[
                    (rows["scenario"] == scenario)
                    & (rows["layer"] == layer)
                    & (rows["unit"] == unit.unit)
                    & (rows["method"] == method)
                ]
                verdict = "localized" if unit.localized else "not localized"
                body += writer.add(
                    f"where_{run.name}_{scenario}_{layer}_{unit.unit}_{method}".replace("+", "_"),
                    f"{run.name}, {scenario}, {layer} {unit.unit}: {method}, mass "
                    f"{unit.mass:.2f} vs chance {unit.chance:.2f} and clean {unit.clean_mass:.2f}"
                    f" ({verdict})",
                    png_figure(png),
                    data,
                    CAPTION,
                    photo=True,
                )
    return Section("localization", "Where the units look", body)
