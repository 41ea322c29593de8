"""Per-image evidence an audit saves beside its tables: predictions and the images behind units.

Two small tables make the cross-model report possible without keeping activations:

- ``predictions_table``: for every image, its label and the top-1 class on the clean frame and on
  each probe (accuracy drops and prediction flips come from it);
- ``top_images_table``: for the most sensitive units of each scenario and layer, the images whose
  probe moves the unit most in the direction the watermark moves it (up when AUC >= 0.5, down
  otherwise), with the image path, the drawn text and both activations. The probe image itself is
  redrawn exactly from (seed, image id, scenario), so no pixels are stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from wmprobe.constants import CLEAN, LOGITS
from wmprobe.errors import InvalidArgumentError
from wmprobe.extraction.activations import Activations
from wmprobe.probes.images import ImageRecord

TOP_IMAGES_COLUMNS = [
    "model",
    "scenario",
    "layer",
    "unit",
    "class_name",
    "auc",
    "d",
    "unit_rank",
    "image_rank",
    "image_id",
    "path",
    "text",
    "clean",
    "probe",
    "change",
]


def predictions_table(acts: Activations) -> pd.DataFrame | None:
    """One row per image: ``image_id``, ``label`` (-1 unknown), ``pred_clean``, ``pred_<scenario>``.

    None when the logits were not extracted.
    """
    if LOGITS not in acts.values:
        return None
    data: dict[str, object] = {"image_id": acts.image_ids, "label": acts.labels.astype(np.int64)}
    for variant in acts.variants:
        data[f"pred_{variant}"] = acts.get(LOGITS, variant).argmax(axis=1).astype(np.int64)
    return pd.DataFrame(data)


def top_images_table(
    acts: Activations,
    table: pd.DataFrame,
    records: Sequence[ImageRecord],
    *,
    units: int = 4,
    images: int = 4,
) -> pd.DataFrame:
    """For each scenario and layer, the ``units`` units with the highest d, and for each the
    ``images`` images whose probe moves it most in the watermark's direction.

    ``change`` is probe minus clean activation; the ranking is by ``change`` (AUC >= 0.5) or by
    ``-change`` (AUC < 0.5). ``path`` is the image file, ``text`` the string drawn on its probe.
    """
    if units < 1 or images < 1:
        raise InvalidArgumentError(
            f"Expected arguments `units` and `images` to be >= 1 but got {units} and {images}"
        )
    paths = {r.image_id: str(r.path) for r in records}
    ids = np.asarray(acts.image_ids)
    rows = []
    for (scenario, layer), group in table.groupby(["scenario", "layer"], sort=False):
        if layer not in acts.values or scenario not in acts.variants:
            continue
        clean = acts.get(layer, CLEAN)
        probe = acts.get(layer, scenario)
        best = group.sort_values(["d", "unit"], ascending=[False, True], kind="stable").head(units)
        for unit_rank, unit_row in enumerate(best.itertuples(), start=1):
            u = int(unit_row.unit)
            change = probe[:, u] - clean[:, u]
            direction = 1.0 if unit_row.auc >= 0.5 else -1.0
            order = np.argsort(-direction * change, kind="stable")[:images]
            for image_rank, i in enumerate(order, start=1):
                image_id = str(ids[i])
                rows.append(
                    {
                        "model": acts.model,
                        "scenario": scenario,
                        "layer": layer,
                        "unit": u,
                        "class_name": unit_row.class_name,
                        "auc": float(unit_row.auc),
                        "d": float(unit_row.d),
                        "unit_rank": unit_rank,
                        "image_rank": image_rank,
                        "image_id": image_id,
                        "path": paths.get(image_id, ""),
                        "text": acts.texts.get(scenario, [""] * len(ids))[i],
                        "clean": float(clean[i, u]),
                        "probe": float(probe[i, u]),
                        "change": float(change[i]),
                    }
                )
    return pd.DataFrame(rows, columns=TOP_IMAGES_COLUMNS)
