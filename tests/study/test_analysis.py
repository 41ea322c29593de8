import json

import numpy as np
import pandas as pd
import pytest

from wmprobe.errors import RunFolderError
from wmprobe.study import analysis


def synthetic_table(models=("m1", "m2", "m3"), scenarios=("chinese", "latin"), classes=12, seed=0):
    """A per-unit table with known AUCs, block layers and extra columns (as later tables have)."""
    rng = np.random.default_rng(seed)
    frames = []
    for model in models:
        for scenario in scenarios:
            for layer, n in (("block1", 20), ("block2", 16), ("logits", classes), ("features", 8)):
                a = rng.uniform(0, 1, n)
                frames.append(
                    pd.DataFrame(
                        {
                            "model": model,
                            "layer": layer,
                            "scenario": scenario,
                            "unit": np.arange(n),
                            "class_name": [f"class_{u}" for u in range(n)]
                            if layer == "logits"
                            else "",
                            "auc": a,
                            "d": np.maximum(a, 1 - a),
                            "ci_low": a - 0.05,
                            "ci_high": a + 0.05,
                            "q": rng.uniform(0, 1, n),
                        }
                    )
                )
    return pd.concat(frames, ignore_index=True)


def test_class_ranking_orders_by_mean_auc_and_keeps_every_models_value():
    table = synthetic_table()
    ranking = analysis.class_ranking(table, k=3)
    logits = table[(table.layer == "logits") & (table.scenario == "latin")]
    mean = logits.groupby("unit")["auc"].mean()
    top = ranking[(ranking.scenario == "latin") & (ranking.side == "top")]
    bottom = ranking[(ranking.scenario == "latin") & (ranking.side == "bottom")]
    assert top.drop_duplicates("rank")["unit"].tolist() == mean.nlargest(3).index.tolist()
    assert bottom.drop_duplicates("rank")["unit"].tolist() == mean.nsmallest(3).index.tolist()
    assert len(top) == 3 * 3  # three classes x three models
    for row in top.itertuples():
        expected = logits[(logits.model == row.model) & (logits.unit == row.unit)]["auc"].item()
        assert row.auc == expected
        assert row.mean_auc == pytest.approx(mean.loc[row.unit])
    assert {"ci_low", "ci_high"} <= set(ranking.columns)  # used when present


def test_class_ranking_keeps_only_classes_every_model_has():
    table = synthetic_table(models=("a", "b"), scenarios=("chinese",))
    table = table[~((table.model == "b") & (table.layer == "logits") & (table.unit == 0))]
    ranking = analysis.class_ranking(table, k=20)
    assert 0 not in set(ranking["unit"])
    assert ranking.groupby(["side", "unit"]).size().eq(2).all()


def test_class_ranking_does_not_mix_classes_of_models_with_other_outputs():
    imagenet = synthetic_table(models=("a", "b"), scenarios=("chinese",), classes=12)
    ten = synthetic_table(models=("c",), scenarios=("chinese",), classes=10, seed=1)
    names = {u: f"imagenet_{u}" for u in range(12)} | {3: "class_3"}  # one name in common
    logits = imagenet.layer == "logits"
    imagenet.loc[logits, "class_name"] = imagenet.loc[logits, "unit"].map(names)
    ranking = analysis.class_ranking(pd.concat([imagenet, ten], ignore_index=True), k=5)
    assert set(ranking["unit"]) == {3} and set(ranking["class_name"]) == {"class_3"}
    assert sorted(ranking.drop_duplicates("side")["side"]) == ["bottom", "top"]
    assert ranking.groupby("side").size().eq(3).all()  # unit 3 of a, b and c


def test_sensitive_counts_match_a_direct_count():
    table = synthetic_table()
    counts = analysis.sensitive_counts(table)
    row = counts[
        (counts.model == "m2")
        & (counts.scenario == "chinese")
        & (counts.layer == "features")
        & (counts.threshold == 0.8)
    ]
    d = table[(table.model == "m2") & (table.scenario == "chinese") & (table.layer == "features")].d
    assert row["count"].item() == int((d > 0.8).sum())
    assert row["share"].item() == pytest.approx((d > 0.8).mean())
    assert set(counts["threshold"]) == {0.7, 0.8, 0.9, 0.95}


def test_depth_profile_uses_block_layers_in_table_order():
    table = synthetic_table(models=("m1",), scenarios=("chinese",))
    profile = analysis.depth_profile(table, threshold=0.9)
    assert profile["layer"].tolist() == ["block1", "block2"]
    assert profile["position"].tolist() == [0, 1]
    b2 = table[(table.layer == "block2")]
    assert profile.loc[1, "share"] == pytest.approx((b2.d > 0.9).mean())
    assert profile.loc[1, "units"] == 16


def test_depth_profile_is_empty_without_block_layers():
    table = synthetic_table()
    heads = table[table.layer.isin(["logits", "features"])]
    assert analysis.depth_profile(heads).empty


def test_accuracy_drops_and_prediction_flips():
    acc = pd.DataFrame(
        {"model": ["m"] * 3, "variant": ["clean", "chinese", "latin"], "top1": [0.8, 0.5, 0.75]}
    )
    drops = analysis.accuracy_drops(acc)
    assert drops["drop"].tolist() == pytest.approx([0.0, 0.3, 0.05])
    preds = pd.DataFrame(
        {
            "image_id": list("abcd"),
            "label": [1, 2, 3, 4],
            "pred_clean": [1, 2, 9, 4],
            "pred_chinese": [7, 2, 3, 7],
        }
    )
    flips = analysis.prediction_flips(preds, "m", class_names=[f"c{i}" for i in range(10)])
    row = flips.iloc[0]
    assert row["scenario"] == "chinese" and row["changed"] == 3
    assert row["correct_to_wrong"] == 2 and row["wrong_to_correct"] == 1
    assert row["flips_to"].startswith("c7 (2)")


def test_bad_tables_are_named_errors():
    with pytest.raises(ValueError, match="column"):
        analysis.class_ranking(pd.DataFrame({"model": ["x"]}))
    with pytest.raises(ValueError, match="`k`"):
        analysis.class_ranking(synthetic_table(), k=0)


def test_load_study_reads_one_run_folder_or_models_folders(tmp_path):
    table = synthetic_table(models=("m1",), scenarios=("chinese",))
    single = tmp_path / "single"
    single.mkdir()
    table.to_parquet(single / "units.parquet")
    (single / "run.json").write_text(json.dumps({"model": "m1", "seed": 3}))
    study = analysis.load_study(single)
    assert study.models == ["m1"] and study.runs[0].config["seed"] == 3
    assert study.runs[0].accuracy is None  # optional files are optional

    many = tmp_path / "many"
    for model in ("zz", "aa"):
        folder = many / "models" / model
        folder.mkdir(parents=True)
        table.assign(model=model).to_parquet(folder / "units.parquet")
        (folder / "run.json").write_text(json.dumps({"model": model}))
    (many / "models" / "half").mkdir()
    (many / "study.json").write_text(
        json.dumps(
            {
                "models": ["zz", "aa", "gone"],
                "statuses": {"gone": {"status": "skipped", "reason": "no"}},
            }
        )
    )
    study = analysis.load_study(many)
    assert study.models == ["zz", "aa"]  # the manifest's order
    assert study.skipped["gone"] == "no" and "unfinished" in study.skipped["half"]


def test_load_study_of_nothing_is_a_clear_error(tmp_path):
    with pytest.raises(RunFolderError, match="holds no audit"):
        analysis.load_study(tmp_path)
    with pytest.raises(RunFolderError, match="does not exist"):
        analysis.load_study(tmp_path / "nope")
