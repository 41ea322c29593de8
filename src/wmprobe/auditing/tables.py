"""The tables of an audit: per unit (AUC, d, intervals, q, paired effects, null and placebo
columns), per output class (accuracy, delta_p, flips) and the stability of the top units."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from wmprobe.constants import CLEAN, LOGITS
from wmprobe.errors import InvalidArgumentError
from wmprobe.extraction.activations import Activations
from wmprobe.stats.core import (
    auc,
    bh_qvalues,
    delong_pvalue,
    delong_variance,
    differentiability,
    null_threshold,
    split_half_d,
    topk_jaccard,
    unit_table,
)
from wmprobe.stats.output_metrics import CARTON_INDEX, output_metrics, top_flip_classes
from wmprobe.stats.rank import as_pair, default_threads, swapped_u_statistics, thread_map

#: The quantile of the permutation-null d values that a unit must exceed to be ``calibrated``.
NULL_QUANTILE = 0.999
#: How far above the null threshold d must lie to count (floating-point rounding, no more).
CALIBRATION_MARGIN = 1e-9
#: How many sign-flip permutations make the null of one scenario and layer.
NULL_PERMUTATIONS = 20
#: The significance level for ``text_detector``.
ALPHA = 0.05
#: At most this many values per ``[n_images, units]`` block read by the table stage.
BLOCK_ELEMENTS = 4_000_000

TABLE_COLUMNS = [
    "model", "layer", "scenario", "unit", "class_name", "auc", "d", "ci_low", "ci_high", "p", "q",
    "mean_diff", "std_diff", "wilcoxon_p", "null_threshold", "calibrated", "placebo_d",
    "placebo_q", "text_detector",
]  # fmt: skip

_PLACEBO = re.compile(r"\+placebo_[a-z]+")


def placebo_base(scenario: str) -> str | None:
    """The text scenario that a placebo controls for (``chinese+placebo_box`` -> ``chinese``)."""
    return _PLACEBO.sub("", scenario) if _PLACEBO.search(scenario) else None


def sign_flip_masks(n_images: int, n_perm: int = NULL_PERMUTATIONS, seed: int = 0) -> np.ndarray:
    """``[n_perm, n_images]`` booleans: which images swap clean and probe in each permutation."""
    return np.random.default_rng(seed).random((n_perm, n_images)) < 0.5


def permutation_null_d(
    clean: np.ndarray,
    probe: np.ndarray,
    n_perm: int = NULL_PERMUTATIONS,
    seed: int = 0,
    swaps: np.ndarray | None = None,
) -> np.ndarray:
    """d of every unit under ``n_perm`` sign-flip permutations: ``[n_perm, n_units]``.

    Each permutation swaps the clean and probe rows of a random half of the images (row i of both
    is the same image), which is what d looks like when the artifact has no effect on these
    images and this model. ``swaps`` (from :func:`sign_flip_masks`) overrides ``n_perm`` and
    ``seed``, so that blocks of units share the same permutations.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> c = rng.normal(size=(100, 3)); p = c + [0.0, 0.0, 5.0]
        >>> bool(permutation_null_d(c, p).max() < 0.75)
        True
    """
    c, p = np.asarray(clean), np.asarray(probe)
    if c.shape != p.shape:
        raise InvalidArgumentError(
            f"Expected arguments `clean` and `probe` to be paired (same shape) but got {c.shape} "
            f"and {p.shape}"
        )
    swaps = sign_flip_masks(c.shape[0], n_perm, seed) if swaps is None else np.asarray(swaps)
    if swaps.ndim != 2 or swaps.shape[1] != c.shape[0]:
        raise InvalidArgumentError(
            f"Expected argument `swaps` of shape [n_perm, {c.shape[0]}] but got {swaps.shape}"
        )
    cm, pm = as_pair(c, p, check_finite=False)
    u = swapped_u_statistics(cm, pm, swaps, names=("clean", "probe"))
    if u is not None:  # one sort for every permutation
        return differentiability(u / (cm.shape[0] * pm.shape[0]))
    out = np.empty((swaps.shape[0], c.shape[1]))
    for i, swap in enumerate(swaps):
        s = swap[:, None]
        out[i] = differentiability(auc(np.where(s, p, c), np.where(s, c, p)))
    return out


def _unit_blocks(acts: Activations, layer: str, block_elements: int) -> list[tuple[int, int]]:
    """``(start, stop)`` ranges of units whose ``[n_images, stop - start]`` blocks hold at most
    ``block_elements`` values (at least one unit each)."""
    step = max(1, block_elements // max(1, len(acts.image_ids)))
    total = acts.units(layer)
    return [(a, min(total, a + step)) for a in range(0, total, step)]


def _by_block(acts: Activations, block_elements: int, work) -> dict[str, list]:
    """Layer -> ``[work(layer, start, stop) for each block of its units]``, in unit order.

    The blocks are worked on by as many threads as ``stats.rank`` uses while the machine has idle
    CPUs (numpy's sorts run without the GIL; see :func:`~wmprobe.stats.rank.thread_map`), each
    thread on a block of at most ``block_elements / threads`` values, so the blocks in memory at
    once hold no more than one block did on one thread. Results do not depend on the thread
    count.
    """
    threads = default_threads()
    budget = max(1, block_elements // threads)
    jobs = [(layer, *b) for layer in acts.values for b in _unit_blocks(acts, layer, budget)]
    results = thread_map(lambda job: work(*job), jobs, threads)
    out: dict[str, list] = {layer: [] for layer in acts.values}
    for (layer, _, _), result in zip(jobs, results, strict=True):
        out[layer].append(result)
    return out


def _placebos(acts: Activations) -> dict[str, list[str]]:
    """Text scenario -> its placebo scenarios (both in the run)."""
    out: dict[str, list[str]] = {}
    for scenario in acts.variants[1:]:
        base = placebo_base(scenario)
        if base is not None and base in acts.variants:
            out.setdefault(base, []).append(scenario)
    return out


def audit_table(
    acts: Activations,
    class_names: Sequence[str],
    seed: int = 0,
    n_perm: int = NULL_PERMUTATIONS,
    block_elements: int = BLOCK_ELEMENTS,
) -> pd.DataFrame:
    """One row per (layer, scenario, unit), with the columns of ``TABLE_COLUMNS``.

    ``q`` is Benjamini-Hochberg over the units of one layer and scenario. ``null_threshold`` is
    the ``NULL_QUANTILE`` quantile of d over every unit of that layer under ``n_perm`` sign-flip
    permutations of clean and probe (see :func:`permutation_null_d`), and ``calibrated`` says
    whether d exceeds it. (The ``null`` scenario cannot serve as the null: its two sides are
    pixel-identical, so its d is exactly 0.5; it checks the pipeline instead.)
    ``placebo_d`` is the AUC of placebo (0) against text probe (1), taken in the direction
    in which the text moves the unit (above 0.5: the text moves it further than the placebo), the
    smallest over the scenario's placebos; ``placebo_q`` the largest BH q of those comparisons.
    ``text_detector``: q < ALPHA, placebo_d > 0.5 and placebo_q < ALPHA, i.e. writing moves the
    unit beyond what the occlusion alone does (NA without placebos).

    Units are read in blocks of at most ``block_elements`` values per matrix (from disk when the
    activations are cached), so memory does not grow with images times units; threads work on
    smaller blocks within the same budget (see :func:`_by_block`). The result depends on neither
    the block size nor the thread count.
    """
    swaps = sign_flip_masks(len(acts.image_ids), n_perm, seed)
    placebos = _placebos(acts)
    scenarios = acts.variants[1:]

    def block(layer: str, start: int, stop: int) -> dict[str, tuple]:
        """Scenario -> (unit table, null d, placebo (auc, p) per placebo) of one unit block."""
        clean = acts.block(layer, CLEAN, start, stop)
        out = {}
        for scenario in scenarios:
            probe = acts.block(layer, scenario, start, stop)
            controls = []
            for control in placebos.get(scenario, []):
                a, v = delong_variance(acts.block(layer, control, start, stop), probe)
                controls.append((a, delong_pvalue(a, v)))
            out[scenario] = (
                unit_table(clean, probe),
                permutation_null_d(clean, probe, swaps=swaps),
                controls,
            )
        return out

    frames = []
    for layer, blocks in _by_block(acts, block_elements, block).items():
        parts: dict[str, list] = {s: [] for s in scenarios}
        nulls: dict[str, list] = {s: [] for s in scenarios}
        controls: dict[tuple[str, str], list] = {}
        for result in blocks:
            for scenario, (table, null, placebo) in result.items():
                parts[scenario].append(table)
                nulls[scenario].append(null)
                for control, pair in zip(placebos.get(scenario, []), placebo, strict=True):
                    controls.setdefault((scenario, control), []).append(pair)
        for scenario in scenarios:
            t = pd.concat(parts[scenario], ignore_index=True)
            t["unit"] = np.arange(len(t))
            t["q"] = bh_qvalues(t["p"].to_numpy())
            null = np.concatenate(nulls[scenario], axis=1)
            t["null_threshold"] = null_threshold(null.ravel(), NULL_QUANTILE)
            # A margin above rounding: identical sides give d = 0.5 up to one ulp.
            t["calibrated"] = t["d"] > t["null_threshold"] + CALIBRATION_MARGIN
            _placebo_columns(t, [controls[scenario, c] for c in placebos.get(scenario, [])])
            names = list(class_names) if layer == LOGITS else [""] * len(t)
            t.insert(0, "class_name", names[: len(t)])
            t.insert(0, "scenario", scenario)
            t.insert(0, "layer", layer)
            t.insert(0, "model", acts.model)
            frames.append(t)
    table = pd.concat(frames, ignore_index=True)
    return table[TABLE_COLUMNS]


def _placebo_columns(t: pd.DataFrame, controls: list[list[tuple[np.ndarray, np.ndarray]]]) -> None:
    """Add placebo_d, placebo_q and text_detector to one scenario's table from the blockwise
    ``(auc, p)`` of placebo against probe, one list per placebo."""
    t["placebo_d"] = np.nan
    t["placebo_q"] = np.nan
    t["text_detector"] = pd.Series(pd.NA, index=t.index, dtype="boolean")
    if not controls:
        return
    raises = t["auc"].to_numpy() >= 0.5  # the text's direction per unit
    ds, qs = [], []
    for blocks in controls:
        a = np.concatenate([b[0] for b in blocks])
        ds.append(np.where(raises, a, 1.0 - a))  # > 0.5: text moves it beyond the placebo
        qs.append(bh_qvalues(np.concatenate([b[1] for b in blocks])))
    d_min, q_max = np.min(ds, axis=0), np.max(qs, axis=0)
    t["placebo_d"] = d_min
    t["placebo_q"] = q_max
    beyond = (d_min > 0.5) & (q_max < ALPHA)
    t["text_detector"] = pd.array((t["q"].to_numpy() < ALPHA) & beyond, dtype="boolean")


def class_table(acts: Activations, class_names: Sequence[str]) -> pd.DataFrame:
    """Per scenario and output class: mean softmax probability change and flip rate."""
    frames = []
    for scenario in acts.variants[1:]:
        _, per_class = output_metrics(
            acts.get(LOGITS, CLEAN), acts.get(LOGITS, scenario), acts.labels, class_names
        )
        per_class.insert(0, "scenario", scenario)
        per_class.insert(0, "model", acts.model)
        frames.append(per_class)
    return pd.concat(frames, ignore_index=True)


def output_summary(acts: Activations, class_names: Sequence[str], k: int = 3) -> pd.DataFrame:
    """Per scenario: top-1 accuracy clean and probe (percent), in_w_gap, carton_gap,
    delta_p_carton, the share of changed predictions and the top ``k`` flip classes."""
    rows = []
    for scenario in acts.variants[1:]:
        m, per_class = output_metrics(
            acts.get(LOGITS, CLEAN),
            acts.get(LOGITS, scenario),
            acts.labels,
            class_names,
            CARTON_INDEX if len(class_names) > CARTON_INDEX else None,
        )
        flips = top_flip_classes(per_class, k)
        rows.append(
            {
                "model": acts.model,
                "scenario": scenario,
                "acc_clean": m.acc_clean,
                "acc_probe": m.acc_probe,
                "in_w_gap": m.in_w_gap,
                "carton_gap": m.carton_gap,
                "delta_p_carton": m.delta_p_carton,
                "changed_rate": m.changed_rate,
                "top_flips": "; ".join(
                    f"{r.class_name} ({r.flip_rate:.3f})" for r in flips.itertuples()
                ),
            }
        )
    return pd.DataFrame(rows)


def stability_table(
    acts: Activations, k: int = 20, seed: int = 0, block_elements: int = BLOCK_ELEMENTS
) -> pd.DataFrame:
    """Jaccard overlap of the top-``k`` units by d: between random halves of the images (per
    scenario and layer) and between scenarios (per layer, all images). Units are read in
    blocks and worked on by threads, as in :func:`audit_table`."""
    rows = []
    scenarios = acts.variants[1:]
    halves_ok = len(acts.image_ids) >= 4

    def block(layer: str, start: int, stop: int) -> dict[str, tuple]:
        """Scenario -> (d on all images, d on each random half) of one unit block."""
        clean = acts.block(layer, CLEAN, start, stop)
        out = {}
        for scenario in scenarios:
            probe = acts.block(layer, scenario, start, stop)
            half = split_half_d(clean, probe, seed) if halves_ok else None
            out[scenario] = (differentiability(auc(clean, probe)), half)
        return out

    for layer, blocks in _by_block(acts, block_elements, block).items():
        kk = min(k, acts.units(layer))
        d_all: dict[str, list] = {s: [] for s in scenarios}
        halves: dict[str, list] = {s: [] for s in scenarios}
        for result in blocks:
            for scenario, (d_block, half) in result.items():
                d_all[scenario].append(d_block)
                halves[scenario].append(half)
        d = {s: np.concatenate(v) for s, v in d_all.items()}
        for scenario in scenarios:
            half = np.nan
            if halves_ok:
                d_a = np.concatenate([h[0] for h in halves[scenario]])
                d_b = np.concatenate([h[1] for h in halves[scenario]])
                half = topk_jaccard(d_a, d_b, kk)
            rows.append(
                {"layer": layer, "a": scenario, "b": "(random half)", "k": kk, "jaccard": half}
            )
        for i, a in enumerate(scenarios):
            for b in scenarios[i + 1 :]:
                jac = topk_jaccard(d[a], d[b], kk)
                rows.append({"layer": layer, "a": a, "b": b, "k": kk, "jaccard": jac})
    out = pd.DataFrame(rows)
    out.insert(0, "model", acts.model)
    return out
