"""Tests of the ImageNet-W style output metrics on tiny hand-made logits."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

import wmprobe.stats.output_metrics as om
from wmprobe.stats.output_metrics import output_metrics, top_flip_classes

NAMES = ["cat", "dog", "carton", "fox"]
CARTON = 2


def example():
    """Six images, four classes; the watermark pushes two images to carton and one to fox."""
    clean = np.full((6, 4), -2.0)
    probe = np.full((6, 4), -2.0)
    clean_pred = [0, 1, 2, 1, 3, 0]
    probe_pred = [2, 1, 2, 2, 3, 3]
    clean[np.arange(6), clean_pred] = 3.0
    probe[np.arange(6), probe_pred] = 3.0
    labels = np.array([0, 1, 2, 2, -1, 0])  # image 4 has no label
    return clean, probe, labels


def test_scalar_metrics():
    clean, probe, labels = example()
    m, _ = output_metrics(clean, probe, labels, NAMES, carton_index=CARTON)
    assert (m.n_images, m.n_labelled, m.n_carton) == (6, 5, 2)
    # labelled images 0,1,2,3,5: clean right on 0,1,2,5 (4/5); probe right on 1,2,3 (3/5)
    assert m.acc_clean == pytest.approx(80.0)
    assert m.acc_probe == pytest.approx(60.0)
    assert m.in_w_gap == pytest.approx(-20.0)  # probe minus clean, percentage points
    assert m.carton_gap == pytest.approx(50.0)  # carton images 2,3: 1/2 right -> 2/2 right
    assert m.changed_rate == pytest.approx(3 / 6)  # images 0, 3 and 5 change prediction
    hi, lo = softmax([3.0, -2, -2, -2])[[0, 1]]
    assert m.delta_p_carton == pytest.approx((3 * hi + 3 * lo) / 6 - (hi + 5 * lo) / 6)


def test_per_class_table():
    clean, probe, labels = example()
    _, per_class = output_metrics(clean, probe, labels, NAMES, carton_index=CARTON)
    assert list(per_class.columns) == om.PER_CLASS_COLUMNS
    assert per_class["class_name"].tolist() == NAMES
    assert per_class["flips_to"].tolist() == [0, 0, 2, 1]
    np.testing.assert_allclose(per_class["flip_rate"], [0, 0, 2 / 6, 1 / 6])
    assert per_class["top1_clean"].tolist() == [2, 2, 1, 1]
    assert per_class["top1_probe"].tolist() == [0, 1, 3, 2]
    assert per_class["delta_p"].sum() == pytest.approx(0.0, abs=1e-12)  # probabilities sum to 1
    assert per_class.loc[CARTON, "delta_p"] > 0 > per_class.loc[0, "delta_p"]
    top = top_flip_classes(per_class, k=1)
    assert top["class_name"].tolist() == ["carton"]
    assert top_flip_classes(per_class, k=10)["class_name"].tolist() == ["carton", "fox"]
    with pytest.raises(ValueError, match="`k`"):
        top_flip_classes(per_class, k=0)


def test_missing_carton_and_unknown_labels():
    clean, probe, _ = example()
    m, _ = output_metrics(clean, probe, np.array([0, 1, 0, 1, 3, 0]), NAMES, CARTON)
    assert m.n_carton == 0 and math.isnan(m.carton_gap) and not math.isnan(m.delta_p_carton)
    m, _ = output_metrics(clean, probe, np.full(6, -1), NAMES, carton_index=None)
    assert math.isnan(m.acc_clean) and math.isnan(m.in_w_gap) and math.isnan(m.delta_p_carton)
    m, _ = output_metrics(clean, probe, np.full(6, -1), NAMES)  # 478 is past these 4 classes
    assert math.isnan(m.carton_gap) and math.isnan(m.delta_p_carton)


def test_default_carton_index_on_imagenet_sized_logits():
    rng = np.random.default_rng(0)
    labels = np.r_[[om.CARTON_INDEX] * 2, [1, 2, 3, 4, 5, 6]]
    clean = rng.normal(size=(8, 1000))
    clean[np.arange(2, 8), labels[2:]] += 20.0  # clean: right on all but the carton images
    probe = clean.copy()
    probe[:, om.CARTON_INDEX] += 40.0  # the watermark makes everything a carton
    m, per_class = output_metrics(clean, probe, labels, [f"c{i}" for i in range(1000)])
    assert (m.acc_clean, m.acc_probe) == (75.0, 25.0)
    assert m.in_w_gap == pytest.approx(-50.0) and m.carton_gap == pytest.approx(100.0)
    assert m.delta_p_carton > 0.9
    assert top_flip_classes(per_class, 3)["class_index"].tolist() == [om.CARTON_INDEX]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"probe_logits": np.zeros((5, 4))}, "same shape"),
        ({"labels": np.zeros(5, int)}, "labels"),
        ({"labels": np.full(6, 0.5)}, "labels"),
        ({"labels": np.full(6, 4)}, "< 4"),
        ({"labels": np.full(6, -2)}, "labels"),
        ({"class_names": NAMES[:3]}, "class_names"),
        ({"clean_logits": np.full((6, 4), np.nan)}, "finite"),
        ({"clean_logits": np.zeros(6)}, "2-D"),
    ],
)
def test_bad_arguments(kwargs, match):
    clean, probe, labels = example()
    args = {"clean_logits": clean, "probe_logits": probe, "labels": labels, "class_names": NAMES}
    with pytest.raises(ValueError, match=match):
        output_metrics(**{**args, **kwargs})


def test_docstring_examples():
    assert doctest.testmod(om, extraglobs={"np": np}).failed == 0


def test_row_chunks_give_the_same_metrics(monkeypatch):
    rng = np.random.default_rng(3)
    clean = rng.normal(size=(23, 6)).astype(np.float32)
    probe = clean + rng.normal(scale=2.0, size=clean.shape).astype(np.float32)
    labels = rng.integers(-1, 6, size=23)
    names = list("abcdef")
    whole_m, whole_t = om.output_metrics(clean, probe, labels, names, 2)
    monkeypatch.setattr(om, "ROW_CHUNK", 4)
    m, t = om.output_metrics(clean, probe, labels, names, 2)
    for f in m.__dataclass_fields__:
        assert np.isclose(getattr(m, f), getattr(whole_m, f), rtol=1e-12, equal_nan=True), f
    pd.testing.assert_frame_equal(t, whole_t, rtol=1e-12)
    probe[20, 3] = np.nan  # a bad value in the last chunk is still found
    with pytest.raises(ValueError, match="finite"):
        om.output_metrics(clean, probe, labels, names, 2)
