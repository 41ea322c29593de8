"""Output-level watermark metrics, named as in ImageNet-W (Li et al. 2022, "A Whac-A-Mole Dilemma").

Given the logits of the same images without (clean) and with (probe) a watermark:

* ``acc_clean``, ``acc_probe``: top-1 accuracy in percent over the images with a known label.
* ``in_w_gap`` = ``acc_probe - acc_clean`` in percentage points, the paper's "IN-W gap" (the
  sign its evaluation code uses): negative when the watermark costs accuracy.
* ``carton_gap``: the same difference restricted to images whose true class is ``carton`` (index
  478 of ImageNet-1k), also probe minus clean in percentage points: positive when the watermark
  pushes carton images towards their (correct) class. NaN without carton images.
* ``delta_p`` per class: mean softmax probability of the class on probe images minus on clean
  images (probability units); ``delta_p_carton`` is that of carton.
* per class ``flip_rate``: fraction of all images whose top-1 prediction changes under the probe
  *to* that class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import softmax

from wmprobe.errors import InvalidArgumentError

__all__ = ["CARTON_INDEX", "OutputMetrics", "output_metrics", "top_flip_classes"]

CARTON_INDEX = 478  # "carton" in the ImageNet-1k class order
PER_CLASS_COLUMNS = [
    "class_index", "class_name", "p_clean", "p_probe", "delta_p",
    "top1_clean", "top1_probe", "flips_to", "flip_rate",
]  # fmt: skip


@dataclass(frozen=True)
class OutputMetrics:
    """Scalar output metrics of one model and scenario (see the module docstring)."""

    n_images: int
    n_labelled: int  # images with a known label (label >= 0)
    acc_clean: float  # percent, NaN without labelled images
    acc_probe: float
    in_w_gap: float  # acc_probe - acc_clean, percentage points
    n_carton: int  # labelled images of class carton
    carton_gap: float  # percentage points, NaN when n_carton == 0
    delta_p_carton: float  # probability units, NaN when the carton index is not a class
    changed_rate: float  # fraction of images whose top-1 prediction changes


#: Rows of logits converted to float64 at a time: memory stays bounded whatever the image count.
ROW_CHUNK = 4096


def _check_logits(x: np.ndarray, name: str) -> np.ndarray:
    """``x`` as an array (a memory map stays one) after checking that it is 2-D and non-empty."""
    arr = x if isinstance(x, np.ndarray) else np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidArgumentError(
            f"Expected argument `{name}` to be a 2-D [n, classes] array but got shape {arr.shape}"
        )
    return arr


def _predictions_and_mean_probability(x: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 class per row and the mean softmax probability per class, read ``ROW_CHUNK`` rows
    at a time in float64."""
    pred = np.empty(x.shape[0], dtype=np.int64)
    total = np.zeros(x.shape[1])
    for start in range(0, x.shape[0], ROW_CHUNK):
        rows = np.asarray(x[start : start + ROW_CHUNK], dtype=np.float64)
        if not np.isfinite(rows).all():
            raise InvalidArgumentError(
                f"Expected argument `{name}` to be finite but it holds NaN or inf"
            )
        pred[start : start + len(rows)] = rows.argmax(axis=1)
        total += softmax(rows, axis=1).sum(axis=0)
    return pred, total / x.shape[0]


def _accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float(100.0 * np.mean(pred == labels)) if labels.size else float("nan")


def output_metrics(
    clean_logits: np.ndarray,
    probe_logits: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    carton_index: int | None = CARTON_INDEX,
) -> tuple[OutputMetrics, pd.DataFrame]:
    """ImageNet-W style metrics for one probe, plus a per-class table.

    Args:
        clean_logits: ``[n, classes]`` logits on clean images.
        probe_logits: ``[n, classes]`` logits on the same images with the watermark (row-paired).
        labels: ``[n]`` int true class per image, -1 when unknown (left out of accuracies).
        class_names: ``classes`` names, in class-index order.
        carton_index: the carton class; None (or an index past the classes) makes the carton
            metrics NaN.

    Returns:
        ``(metrics, per_class)``; ``per_class`` has one row per class with columns class_index,
        class_name, p_clean, p_probe, delta_p, top1_clean, top1_probe (images predicted as the
        class), flips_to (images whose prediction changed to the class) and flip_rate.

    Example:
        >>> clean = np.array([[3.0, 0, 0], [0, 3, 0]]); probe = np.array([[0.0, 0, 3], [0, 3, 0]])
        >>> m, per_class = output_metrics(clean, probe, np.array([0, 1]), ["a", "b", "c"], 2)
        >>> m.acc_clean, m.acc_probe, m.in_w_gap, m.changed_rate
        (100.0, 50.0, -50.0, 0.5)
        >>> per_class["flip_rate"].tolist()
        [0.0, 0.0, 0.5]
    """
    clean = _check_logits(clean_logits, "clean_logits")
    probe = _check_logits(probe_logits, "probe_logits")
    if clean.shape != probe.shape:
        raise InvalidArgumentError(
            "Expected arguments `clean_logits` and `probe_logits` to have the same shape but got "
            f"{clean.shape} and {probe.shape}"
        )
    n, n_classes = clean.shape
    y = np.asarray(labels)
    if y.shape != (n,) or y.dtype.kind not in "iu" or (y.size and y.min() < -1):
        raise InvalidArgumentError(
            f"Expected argument `labels` to be {n} ints >= -1 but got shape {y.shape}, {y.dtype}"
        )
    if y.size and y.max() >= n_classes:
        raise InvalidArgumentError(
            f"Expected argument `labels` to be < {n_classes} but got {y.max()}"
        )
    names = [str(s) for s in class_names]
    if len(names) != n_classes:
        raise InvalidArgumentError(
            f"Expected argument `class_names` to have {n_classes} names but got {len(names)}"
        )

    pred_c, p_clean = _predictions_and_mean_probability(clean, "clean_logits")
    pred_p, p_probe = _predictions_and_mean_probability(probe, "probe_logits")
    changed = pred_c != pred_p
    flips = np.bincount(pred_p[changed], minlength=n_classes)
    known = y >= 0
    acc_c, acc_p = _accuracy(pred_c[known], y[known]), _accuracy(pred_p[known], y[known])

    has_carton = carton_index is not None and 0 <= carton_index < n_classes
    carton = known & (y == carton_index) if has_carton else np.zeros(n, dtype=bool)
    carton_gap = float("nan")
    if carton.any():
        carton_gap = _accuracy(pred_p[carton], y[carton]) - _accuracy(pred_c[carton], y[carton])
    delta_p = p_probe - p_clean
    metrics = OutputMetrics(
        n_images=n,
        n_labelled=int(known.sum()),
        acc_clean=acc_c,
        acc_probe=acc_p,
        in_w_gap=acc_p - acc_c,
        n_carton=int(carton.sum()),
        carton_gap=carton_gap,
        delta_p_carton=float(delta_p[carton_index]) if has_carton else float("nan"),
        changed_rate=float(changed.mean()),
    )
    per_class = pd.DataFrame(
        {
            "class_index": np.arange(n_classes),
            "class_name": names,
            "p_clean": p_clean,
            "p_probe": p_probe,
            "delta_p": delta_p,
            "top1_clean": np.bincount(pred_c, minlength=n_classes),
            "top1_probe": np.bincount(pred_p, minlength=n_classes),
            "flips_to": flips,
            "flip_rate": flips / n,
        }
    )
    return metrics, per_class


def top_flip_classes(per_class: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """The ``k`` classes that the probe flips most predictions to (only classes with flips).

    Sorted by flip_rate, then delta_p (both descending), then class index.

    Example:
        >>> t = pd.DataFrame({"class_index": [0, 1, 2], "class_name": ["a", "b", "c"],
        ...                   "flip_rate": [0.1, 0.0, 0.3], "delta_p": [0.0, 0.1, 0.2]})
        >>> top_flip_classes(t, k=5)["class_name"].tolist()
        ['c', 'a']
    """
    if int(k) < 1:
        raise InvalidArgumentError(f"Expected argument `k` to be a positive integer but got {k!r}")
    flipped = per_class[per_class["flip_rate"] > 0]
    order = flipped.sort_values(
        ["flip_rate", "delta_p", "class_index"], ascending=[False, False, True], kind="stable"
    )
    return order.head(int(k)).reset_index(drop=True)
