from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wmprobe.auditing.evidence import predictions_table, top_images_table
from wmprobe.auditing.run import audit
from wmprobe.auditing.tables import audit_table
from wmprobe.extraction.activations import Activations
from wmprobe.probes.images import ImageRecord


def handmade():
    """Four images, two logit units: unit 0 rises with the text, unit 1 falls."""
    clean = np.array([[0, 5], [0, 5], [0, 5], [0, 5]], dtype=np.float32)
    probe = np.array([[1, 4], [3, 5], [2, 1], [0.5, 2]], dtype=np.float32)
    acts = Activations(
        model="hand",
        image_ids=["a", "b", "c", "d"],
        labels=np.array([0, 1, 1, 0]),
        variants=("clean", "latin"),
        values={"logits": np.stack([clean, probe], axis=1)},
        texts={"latin": ["ta", "tb", "tc", "td"]},
    )
    records = [ImageRecord(path=Path(f"/x/{i}.png"), image_id=i) for i in "abcd"]
    return acts, records


def test_top_images_follow_the_watermarks_direction():
    acts, records = handmade()
    table = audit_table(acts, ["up", "down"])
    top = top_images_table(acts, table, records, units=2, images=2)
    up = top[top["unit"] == 0]
    assert up["image_id"].tolist() == ["b", "c"]  # largest increases
    assert up["change"].tolist() == [3.0, 2.0]
    down = top[top["unit"] == 1]
    assert down["image_id"].tolist() == ["c", "d"]  # largest decreases (AUC < 0.5)
    assert down["auc"].iloc[0] < 0.5
    assert top.loc[top.image_id == "b", "path"].iloc[0] == "/x/b.png"
    assert top.loc[top.image_id == "c", "text"].iloc[0] == "tc"
    with pytest.raises(ValueError, match="`units`"):
        top_images_table(acts, table, records, units=0)


def test_predictions_table_holds_every_variants_top1():
    acts, _ = handmade()
    preds = predictions_table(acts)
    assert preds["pred_clean"].tolist() == [1, 1, 1, 1]
    assert preds["pred_latin"].tolist() == [1, 1, 0, 1]
    assert preds["label"].tolist() == [0, 1, 1, 0]


def test_saved_run_folder_has_the_report_evidence(image_dir, tmp_path):
    result = audit(
        image_dir, model="tiny_test_net", scenarios=["latin"], progress=False, num_workers=0
    )
    paths = result.save(tmp_path)
    assert "accuracy.csv" not in paths  # the synthetic images have no labels
    preds = pd.read_parquet(paths["predictions.parquet"])
    assert len(preds) == 12 and (preds["label"] == -1).all()
    top = pd.read_parquet(paths["top_images.parquet"])
    assert set(top["layer"]) == {"logits", "features"}
    assert top.groupby(["layer", "unit"]).size().eq(4).all()
    first = top.iloc[0]
    clean = result.activations.get(first.layer, "clean")
    i = result.activations.image_ids.index(first.image_id)
    assert clean[i, first.unit] == pytest.approx(first.clean)
    assert list(paths)[-1] == "run.json"  # written last: its presence marks a finished folder
