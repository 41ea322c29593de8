"""A scan measured against labels: AUROC, AP, precision/recall/F1 at the threshold, precision@K.

A label file is a CSV with columns ``file`` (relative to the scanned folder) and ``label``: ``1``,
``watermark`` (an overlaid mark) or ``0``, ``none``, ``scene_text`` (text that belongs to the
scene is no overlay); an optional ``family`` column gives per-family figures. Every figure equals
scikit-learn's (``roc_auc_score``, ``average_precision_score``, ``precision_recall_fscore_support``
with ``pos_label=1``) on the same scores; an undefined figure (no predicted positive) is null.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from wmprobe.errors import InvalidArgumentError
from wmprobe.stats.core import auc

POSITIVE = {"1": 1, "watermark": 1, "0": 0, "none": 0, "scene_text": 0}


class LabelFileError(InvalidArgumentError):
    """A label file that cannot be used as it is (the message says which rows and why)."""


def read_labels(path: str | Path) -> pd.DataFrame:
    """The label file as ``file``, ``label`` (0/1) and ``family`` (may be empty); checked."""
    path = Path(path)
    if not path.is_file():
        raise LabelFileError(f"Label file {str(path)!r} does not exist.")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        if "file" not in columns or "label" not in columns:
            raise LabelFileError(
                f"Label file {str(path)!r} needs columns `file` and `label` but has {columns}."
            )
        rows = list(reader)
    if not rows:
        raise LabelFileError(f"Label file {str(path)!r} has no rows.")
    bad = [
        (i + 2, r["label"])
        for i, r in enumerate(rows)
        if str(r["label"]).strip().lower() not in POSITIVE
    ]
    if bad:
        shown = ", ".join(f"line {n}: {v!r}" for n, v in bad[:5])
        raise LabelFileError(
            f"Label file {str(path)!r} has {len(bad)} unknown label(s) ({shown}); use 1/0 or "
            "watermark/none (scene_text counts as none)."
        )
    table = pd.DataFrame(
        {
            "file": [r["file"].strip() for r in rows],
            "label": [POSITIVE[str(r["label"]).strip().lower()] for r in rows],
            "family": [(r.get("family") or "").strip() for r in rows],
        }
    )
    dup = table["file"][table["file"].duplicated()].unique()
    if len(dup):
        raise LabelFileError(
            f"Label file {str(path)!r} lists {len(dup)} file(s) more than once "
            f"(first: {', '.join(map(repr, dup[:3]))}); keep one row per file."
        )
    return table


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision (scikit-learn's step-wise definition; tied scores are one threshold)."""
    order = np.argsort(-score, kind="mergesort")
    s, yy = score[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(yy)[last]
    fps = last + 1 - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _ratio(a: int, b: int) -> float | None:
    return None if b == 0 else a / b


def metrics(y: np.ndarray, score: np.ndarray, threshold: float, ks=(10, 50, 100)) -> dict:
    """Every figure for labels ``y`` (0/1) and scores, predicted positive when score > threshold."""
    y = np.asarray(y, dtype=np.int64)
    score = np.asarray(score, dtype=np.float64)
    pos, neg = score[y == 1], score[y == 0]
    pred = score > threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = (
        None
        if precision is None or recall is None
        else (0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    )
    order = np.argsort(-score, kind="mergesort")
    at_k = {str(k): float(y[order[:k]].mean()) for k in ks if k <= len(y)}
    both = len(pos) and len(neg)
    return {
        "n": int(len(y)),
        "positives": int(len(pos)),
        "auroc": float(auc(neg, pos)[0]) if both else None,
        "average_precision": average_precision(y, score) if len(pos) else None,
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "false_positive_rate": _ratio(fp, fp + tn),
        "precision_at_k": at_k,
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def evaluate(
    table: pd.DataFrame, labels: pd.DataFrame, *, root: Path, threshold: float, top: int = 48
) -> dict:
    """The scan's figures on the labelled images (all of them must have been scored)."""
    prefix = len(str(root).rstrip("/")) + 1
    scores = dict(zip((p[prefix:] for p in table["path"]), table["score"], strict=True))
    missing = [f for f in labels["file"] if f not in scores]
    if missing:
        raise LabelFileError(
            f"{len(missing)} labelled file(s) were not scored (absent from {str(root)!r} or "
            f"unreadable; first: {', '.join(map(repr, missing[:3]))}); the `file` column is "
            "relative to the scanned folder."
        )
    s = labels["file"].map(scores).to_numpy(np.float64)
    y = labels["label"].to_numpy()
    ks = sorted({10, 50, 100, top} - {0})
    result = metrics(y, s, threshold, ks)
    families = sorted(f for f in labels["family"].unique() if f)
    if families:
        negatives = y == 0
        result["per_family"] = {
            fam: metrics(y[keep], s[keep], threshold, ks)
            for fam in families
            if (keep := negatives | ((labels["family"] == fam).to_numpy() & (y == 1))).any()
        }
    return result


def format_evaluation(ev: dict) -> str:
    """A few printed lines of an evaluation."""

    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    c = ev["confusion"]
    lines = [
        f"evaluation on {ev['n']} labelled images ({ev['positives']} marked): "
        f"AUROC {f(ev['auroc'])}, AP {f(ev['average_precision'])}",
        f"  at threshold {ev['threshold']:.4f}: precision {f(ev['precision'])}, recall "
        f"{f(ev['recall'])}, F1 {f(ev['f1'])}; "
        f"confusion tn {c['tn']} fp {c['fp']} fn {c['fn']} tp {c['tp']}",
        "  precision@K: " + ", ".join(f"{k}: {v:.3f}" for k, v in ev["precision_at_k"].items()),
    ]
    for fam, m in ev.get("per_family", {}).items():
        lines.append(
            f"  {fam}: n {m['n']}, AUROC {f(m['auroc'])}, AP {f(m['average_precision'])}, "
            f"recall {f(m['recall'])}"
        )
    return "\n".join(lines)
