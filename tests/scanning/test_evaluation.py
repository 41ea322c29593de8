"""Label files and metrics: equal to scikit-learn's on the same scores; bad files, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wmprobe.scanning.evaluation import (
    LabelFileError,
    average_precision,
    evaluate,
    metrics,
    read_labels,
)

sklearn_metrics = pytest.importorskip(
    "sklearn.metrics", reason="scikit-learn (test extra) is absent"
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(-5, 5)), min_size=2, max_size=60),
    st.integers(-5, 5),
)
def test_metrics_equal_scikit_learn(rows, cut):
    y = np.array([r[0] for r in rows])
    s = np.array([r[1] for r in rows], dtype=float) / 2  # many ties
    if y.min() == y.max():
        return
    threshold = cut / 2
    m = metrics(y, s, threshold)
    assert m["auroc"] == pytest.approx(sklearn_metrics.roc_auc_score(y, s), abs=1e-12)
    assert m["average_precision"] == pytest.approx(
        sklearn_metrics.average_precision_score(y, s), abs=1e-12
    )
    pred = (s > threshold).astype(int)
    tn, fp, fn, tp = sklearn_metrics.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert m["confusion"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    if pred.any():
        p, r, f, _ = sklearn_metrics.precision_recall_fscore_support(
            y, pred, average="binary", zero_division=0
        )
        assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((p, r, f), abs=1e-12)
    else:
        assert m["precision"] is None  # undefined, so absent


def test_average_precision_simple_case():
    assert average_precision(np.array([1, 0, 1]), np.array([3.0, 2.0, 1.0])) == pytest.approx(
        (1 + 2 / 3) / 2
    )


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_labels_read_all_spellings(tmp_path):
    table = read_labels(
        _write(tmp_path, "file,label\na.jpg,1\nb.jpg,none\nc.jpg,Watermark\nd.jpg,scene_text\n")
    )
    assert table["label"].tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name,label\na.jpg,1\n", "needs columns `file` and `label`"),
        (
            "file,label\na.jpg,maybe\nb.jpg,2\n",
            r"2 unknown label\(s\) \(line 2: 'maybe', line 3: '2'\)",
        ),
        ("file,label\na.jpg,1\na.jpg,0\n", "more than once"),
        ("file,label\n", "no rows"),
    ],
)
def test_bad_label_files_give_clear_errors(tmp_path, text, match):
    with pytest.raises(LabelFileError, match=match):
        read_labels(_write(tmp_path, text))


def test_missing_label_file(tmp_path):
    with pytest.raises(LabelFileError, match="does not exist"):
        read_labels(tmp_path / "nope.csv")


def test_labelled_files_that_were_not_scanned(tmp_path):
    table = pd.DataFrame({"path": [str(tmp_path / "a.jpg")], "score": [1.0]})
    labels = read_labels(_write(tmp_path, "file,label\na.jpg,1\nb.jpg,0\n"))
    with pytest.raises(LabelFileError, match=r"1 labelled file\(s\) were not scored.*'b.jpg'"):
        evaluate(table, labels, root=tmp_path, threshold=0.0)


def test_per_family_figures(tmp_path):
    table = pd.DataFrame(
        {"path": [str(tmp_path / f"{i}.jpg") for i in range(6)], "score": [5, 4, 3, 2, 1, 0.0]}
    )
    labels = read_labels(
        _write(
            tmp_path,
            "file,label,family\n0.jpg,1,url\n1.jpg,1,date\n2.jpg,0,\n3.jpg,1,url\n4.jpg,0,\n5.jpg,0,\n",
        )
    )
    ev = evaluate(table, labels, root=tmp_path, threshold=2.5)
    assert ev["per_family"]["url"]["positives"] == 2 and ev["per_family"]["date"]["auroc"] == 1.0
    assert ev["confusion"] == {"tn": 2, "fp": 1, "fn": 1, "tp": 2}
