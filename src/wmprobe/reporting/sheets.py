"""Contact sheets of probe images, redrawn exactly from (seed, image id, scenario).

No pixels are stored by an audit: a probe image is ``scenario.draw(load_frame(path), seed=seed,
image_id=image_id)`` with the scenario rebuilt from the run's run.json
(:func:`wmprobe.auditing.runfolder.run_scenarios`), which gives the very image the model saw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from wmprobe.errors import BadImageError, InvalidArgumentError
from wmprobe.probes.images import ImageRecord, load_frame
from wmprobe.probes.scenario import Scenario, resolve_scenarios
from wmprobe.reporting.figures import image_grid_figure


def scenario_sheet(
    records: Sequence[ImageRecord],
    scenario: Scenario | str,
    *,
    seed: int,
    n: int = 8,
    ncols: int = 4,
) -> tuple[Figure, pd.DataFrame]:
    """The probe images of the first ``n`` readable records for one scenario, and what was drawn.

    ``scenario`` is a :class:`Scenario` (e.g. from the run's run.json) or a name that
    :func:`~wmprobe.probes.scenario.resolve_scenarios` resolves to one scenario. Images that
    cannot be read are passed over (the audit skipped them too). Returns the figure and a table
    ``image_id``, ``path``, ``text``, ``bbox``.
    """
    if n < 1 or ncols < 1:
        raise InvalidArgumentError(
            f"Expected arguments `n` and `ncols` to be >= 1 but got {n} and {ncols}"
        )
    probe = _one_scenario(scenario)
    images, rows = [], []
    for record in records:
        if len(images) == n:
            break
        frame = _readable_frame(record.path)
        if frame is None:
            continue
        drawn = probe.draw(frame, seed=seed, image_id=record.image_id)
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
            "Expected argument `records` to hold at least one readable image but got none"
        )
    grid = [images[i : i + ncols] for i in range(0, len(images), ncols)]
    captions = [
        [r["image_id"].split("/")[-1][:22] for r in rows[i : i + ncols]]
        for i in range(0, len(rows), ncols)
    ]
    fig = image_grid_figure(grid, captions, title=f"{probe.name}: probe images (seed {seed})")
    return fig, pd.DataFrame(rows)


def unit_sheet(
    top_images: pd.DataFrame,
    units: pd.DataFrame,
    *,
    seed: int,
    scenarios: Mapping[str, Scenario] | None = None,
) -> tuple[Figure, pd.DataFrame]:
    """For each unit in ``units``, its top images from ``top_images``: clean frame beside probe.

    ``top_images`` is one model's ``top_images.parquet``; ``units`` picks rows of it by
    (scenario, layer, unit), e.g. :func:`wmprobe.study.analysis.most_sensitive_units`.
    ``scenarios`` are the run's scenarios by name (default: the names resolved again). Images
    that cannot be read now are passed over. Returns the figure and the table of what it shows,
    with ``text_matches``: whether the redrawn text equals the text the audit drew.
    """
    scenarios = dict(scenarios or {})
    grid, captions, titles, shown = [], [], [], []
    for unit in units.itertuples():
        picks = top_images[
            (top_images["scenario"] == unit.scenario)
            & (top_images["layer"] == unit.layer)
            & (top_images["unit"] == unit.unit)
        ].sort_values("image_rank")
        row, caps = [], []
        for pick in picks.itertuples():
            frame = _readable_frame(Path(pick.path))
            if frame is None:
                continue
            if pick.scenario not in scenarios:
                scenarios[pick.scenario] = _one_scenario(pick.scenario)
            probe = scenarios[pick.scenario]
            drawn = probe.draw(frame, seed=seed, image_id=pick.image_id)
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


def _one_scenario(scenario: Scenario | str) -> Scenario:
    if isinstance(scenario, Scenario):
        return scenario
    found = resolve_scenarios([scenario])
    if len(found) != 1:
        raise InvalidArgumentError(
            f"Expected argument `scenario` to name one scenario but {scenario!r} names {len(found)}"
        )
    return found[0]


def _readable_frame(path: Path) -> Image.Image | None:
    """The frame of ``path``, or None when it cannot be read now (as the audit skips it)."""
    try:
        return load_frame(path)
    except (BadImageError, OSError):
        return None
