"""Contact sheets of probe images, redrawn exactly from (seed, image id, scenario).

No pixels are stored by an audit: a probe image is ``Scenario.preset(name).draw(load_frame(path),
seed=seed, image_id=image_id)``, which gives the very image the model saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from wmprobe.errors import InvalidArgumentError
from wmprobe.probes.images import ImageRecord, load_frame
from wmprobe.probes.scenario import Scenario
from wmprobe.reporting.figures import image_grid_figure


def scenario_sheet(
    records: Sequence[ImageRecord], scenario: str, *, seed: int, n: int = 8, ncols: int = 4
) -> tuple[Figure, pd.DataFrame]:
    """The probe images of the first ``n`` records for one scenario, and what was drawn on each.

    Returns the figure and a table ``image_id``, ``path``, ``text``, ``bbox``.
    """
    if n < 1 or ncols < 1:
        raise InvalidArgumentError(
            f"Expected arguments `n` and `ncols` to be >= 1 but got {n} and {ncols}"
        )
    probe = Scenario.preset(scenario)
    images, rows = [], []
    for record in list(records)[:n]:
        drawn = probe.draw(load_frame(record.path), seed=seed, image_id=record.image_id)
        images.append(drawn.image)
        rows.append(
            {
                "image_id": record.image_id,
                "path": str(record.path),
                "text": drawn.text,
                "bbox": ",".join(map(str, drawn.bbox)) if drawn.bbox else "",
            }
        )
    if not images:
        raise InvalidArgumentError(
            "Expected argument `records` to hold at least one image but got none"
        )
    grid = [images[i : i + ncols] for i in range(0, len(images), ncols)]
    captions = [
        [r["image_id"].split("/")[-1][:22] for r in rows[i : i + ncols]]
        for i in range(0, len(rows), ncols)
    ]
    fig = image_grid_figure(grid, captions, title=f"{scenario}: probe images (seed {seed})")
    return fig, pd.DataFrame(rows)


def unit_sheet(
    top_images: pd.DataFrame, units: pd.DataFrame, *, seed: int
) -> tuple[Figure, pd.DataFrame]:
    """For each unit in ``units``, its top images from ``top_images``: clean frame beside probe.

    ``top_images`` is one model's ``top_images.parquet``; ``units`` picks rows of it by
    (scenario, layer, unit), e.g. :func:`wmprobe.study.analysis.most_sensitive_units`. Returns the
    figure and the table of what it shows, with ``text_matches``: whether the redrawn text equals
    the text the audit drew.
    """
    grid, captions, titles, shown = [], [], [], []
    for unit in units.itertuples():
        picks = top_images[
            (top_images["scenario"] == unit.scenario)
            & (top_images["layer"] == unit.layer)
            & (top_images["unit"] == unit.unit)
        ].sort_values("image_rank")
        row, caps = [], []
        for pick in picks.itertuples():
            path = Path(pick.path)
            frame = load_frame(path)
            drawn = Scenario.preset(pick.scenario).draw(frame, seed=seed, image_id=pick.image_id)
            row += [frame, drawn.image]
            caps += [
                f"clean {pick.clean:.2f}",
                f"probe {pick.probe:.2f} ({pick.change:+.2f})",
            ]
            shown.append(
                {
                    "scenario": pick.scenario,
                    "layer": pick.layer,
                    "unit": int(pick.unit),
                    "class_name": pick.class_name,
                    "d": float(pick.d),
                    "image_rank": int(pick.image_rank),
                    "image_id": pick.image_id,
                    "clean": float(pick.clean),
                    "probe": float(pick.probe),
                    "change": float(pick.change),
                    "text_matches": drawn.text == pick.text,
                }
            )
        if row:
            grid.append(row)
            captions.append(caps)
            name = (
                f" {unit.class_name}"
                if isinstance(unit.class_name, str) and unit.class_name
                else ""
            )
            titles.append(f"{unit.scenario}\n{unit.layer} {unit.unit}{name}\nd={unit.d:.3f}")
    fig = image_grid_figure(grid, captions, row_titles=titles, cell=130)
    return fig, pd.DataFrame(shown)
