import doctest
import importlib

import numpy as np
import pandas as pd
import pytest

from wmprobe.attribution.scores import box_mask, iou, score_map, top_quantile_threshold
from wmprobe.attribution.selection import parse_units, select_units
from wmprobe.attribution.summary import unit_summary, wilcoxon_greater
from wmprobe.errors import InvalidArgumentError


def test_score_map_inside_outside_and_chance():
    m = np.zeros((20, 40))
    box = (10, 5, 20, 10)  # 10 x 5 = 50 px of 800
    m[5:10, 10:20] = 2.0
    m[0, 0] = 1.0  # a little outside
    s = score_map(m, box)
    assert s.mass == pytest.approx(100 / 101)
    assert s.rank_accuracy == 1.0 and s.hit and s.chance == pytest.approx(50 / 800)
    outside = score_map(np.where(box_mask((20, 40), box), 0.0, 1.0), box)
    assert outside.mass == 0.0 and not outside.hit and outside.rank_accuracy == 0.0


def test_negative_relevance_does_not_count_and_empty_maps_are_nan():
    m = np.full((10, 10), -5.0)
    m[0, 0] = 1.0
    s = score_map(m, (0, 0, 2, 2))
    assert s.mass == 1.0 and s.hit
    empty = score_map(np.zeros((10, 10)), (0, 0, 2, 2))
    assert np.isnan(empty.mass) and np.isnan(empty.rank_accuracy) and not empty.hit


def test_uniform_random_map_is_at_chance():
    rng = np.random.default_rng(0)
    box = (50, 60, 150, 90)
    scores = [score_map(rng.random((224, 224)), box) for _ in range(20)]
    chance = scores[0].chance
    assert np.mean([s.mass for s in scores]) == pytest.approx(chance, abs=0.005)
    assert np.mean([s.rank_accuracy for s in scores]) == pytest.approx(chance, abs=0.02)


def test_bad_boxes_and_maps_are_named_errors():
    with pytest.raises(InvalidArgumentError, match="box"):
        score_map(np.ones((4, 4)), (3, 0, 1, 2))
    with pytest.raises(InvalidArgumentError, match="inside"):
        score_map(np.ones((4, 4)), (10, 10, 12, 12))
    with pytest.raises(InvalidArgumentError, match="finite"):
        score_map(np.full((4, 4), np.nan), (0, 0, 2, 2))


def test_iou_of_threshold_region():
    m = np.zeros((10, 10))
    m[0:2, 0:4] = 1.0
    assert iou(m, (0, 0, 4, 2), 0.5) == 1.0
    assert iou(m, (0, 0, 2, 2), 0.5) == pytest.approx(0.5)
    assert top_quantile_threshold(np.arange(1000.0), 0.01) == pytest.approx(989.01)


def test_parse_units():
    spec = parse_units("top:8, logits:478,features:3")
    assert spec.top == 8 and spec.named == (("logits", 478), ("features", 3))
    for bad in ("", "top:x", "478", "top:0"):
        with pytest.raises(InvalidArgumentError, match="units"):
            parse_units(bad)


def test_select_units_top_and_named():
    table = pd.DataFrame(
        {
            "model": "m",
            "layer": ["logits"] * 4 + ["features"] * 3,
            "scenario": "chinese",
            "unit": [0, 1, 2, 3, 0, 1, 2],
            "d": [0.6, 0.9, 0.7, 0.8, 0.5, 0.95, 0.55],
        }
    )
    got = select_units(table, ["chinese"], parse_units("top:2,logits:0"))
    assert list(zip(got["layer"], got["unit"], strict=True)) == [
        ("logits", 1), ("logits", 3), ("features", 1), ("features", 2), ("logits", 0),
    ]  # fmt: skip
    with pytest.raises(InvalidArgumentError, match="audited"):
        select_units(table, ["chinese"], parse_units("logits:99"))


def test_wilcoxon_greater():
    assert wilcoxon_greater(np.ones(6), np.zeros(6)) == pytest.approx(1 / 64)
    assert wilcoxon_greater(np.zeros(6), np.ones(6)) == pytest.approx(1.0)
    assert wilcoxon_greater(np.ones(6), np.ones(6)) == 1.0
    assert np.isnan(wilcoxon_greater(np.array([1.0]), np.array([0.0])))


def test_unit_summary_localized_needs_both_chance_and_clean():
    n = 8
    base = {"model": "m", "layer": "features", "scenario": "chinese", "method": "gradcam"}
    rows = []
    for unit, (mass, clean) in enumerate([(0.9, 0.1), (0.9, 0.95), (0.1, 0.05)]):
        for i in range(n):
            rows.append(
                {**base, "unit": unit, "mass": mass + i * 1e-3, "rank_accuracy": mass,
                 "hit": True, "chance": 0.12, "clean_mass": clean, "clean_rank_accuracy": clean,
                 "clean_hit": False}
            )  # fmt: skip
    s = unit_summary(pd.DataFrame(rows)).set_index("unit")
    assert s.loc[0, "localized"] and not s.loc[1, "localized"] and not s.loc[2, "localized"]
    assert s.loc[1, "p_chance"] < 0.01 and s.loc[1, "p_clean"] > 0.5
    assert s.loc[0, "images"] == n and s.loc[0, "chance"] == pytest.approx(0.12)


@pytest.mark.parametrize("module", ["scores", "selection", "summary"])
def test_doctests(module):
    mod = importlib.import_module(f"wmprobe.attribution.{module}")
    result = doctest.testmod(mod, extraglobs={"np": np})
    assert result.failed == 0 and result.attempted > 0
