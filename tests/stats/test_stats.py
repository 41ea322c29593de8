"""Tests of the statistics core: AUC engine, DeLong, intervals, BH, paired and stability stats."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtr
from scipy.stats import wilcoxon
from sklearn.metrics import roc_auc_score

import wmprobe.stats.core as stats_mod
import wmprobe.stats.intervals as intervals_mod
from wmprobe.stats import rank as stats_rank
from wmprobe.stats.core import (
    auc,
    auc_ci,
    auc_pvalue,
    bh_qvalues,
    bootstrap_auc,
    calibrated_flags,
    count_above,
    delong_variance,
    differentiability,
    null_threshold,
    paired_effect,
    split_half_stability,
    text_specific,
    topk_jaccard,
    unit_table,
)


def sklearn_auc(clean: np.ndarray, probe: np.ndarray) -> np.ndarray:
    c, p = np.atleast_2d(clean.T).T, np.atleast_2d(probe.T).T
    y = np.r_[np.zeros(len(c)), np.ones(len(p))]
    return np.array([roc_auc_score(y, np.r_[c[:, j], p[:, j]]) for j in range(c.shape[1])])


def delong_reference(clean: np.ndarray, probe: np.ndarray) -> tuple[float, float]:
    """Textbook DeLong (1988): the O(n0 * n1) kernel and its structural components."""
    psi = (probe[:, None] > clean[None, :]) + 0.5 * (probe[:, None] == clean[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)  # per probe value, per clean value
    return psi.mean(), v10.var(ddof=1) / len(probe) + v01.var(ddof=1) / len(clean)


def tied_data(kind: str, n0: int, n1: int, units: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n0, units))
    p = rng.normal(0.3, size=(n1, units))
    if kind == "relu32":  # many exact zeros
        return np.maximum(c, 0).astype(np.float32), np.maximum(p, 0).astype(np.float32)
    if kind == "mixed32":  # both signs, coarse values, -0.0 and +0.0 together
        c, p = np.round(c, 1).astype(np.float32), np.round(p, 1).astype(np.float32)
        c[0], p[0] = -0.0, 0.0
        return c, p
    if kind == "float64":  # not representable in float32: the argsort path
        return np.round(c, 2) + 1e-12, np.round(p, 2)
    if kind == "int":
        return rng.integers(0, 4, (n0, units)), rng.integers(0, 4, (n1, units))
    raise AssertionError(kind)


# ---------------------------------------------------------------- AUC engine


@pytest.mark.parametrize("kind", ["relu32", "mixed32", "float64", "int"])
@pytest.mark.slow
def test_auc_matches_sklearn_with_ties(kind):
    c, p = tied_data(kind, 37, 53, 300)
    assert np.abs(auc(c, p) - sklearn_auc(c, p)).max() <= 1e-9


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(1, 12),
    st.integers(1, 3),
    st.sampled_from([np.float32, np.float64]),
    st.data(),
)
def test_auc_property_matches_sklearn(n0, n1, units, dtype, data):
    values = st.sampled_from([-1.5, -0.0, 0.0, 0.25, 1.0, 2.0, 1e30, -3e-8])
    c = np.array(data.draw(st.lists(values, min_size=n0 * units, max_size=n0 * units)), dtype)
    p = np.array(data.draw(st.lists(values, min_size=n1 * units, max_size=n1 * units)), dtype)
    c, p = c.reshape(n0, units), p.reshape(n1, units)
    assert np.abs(auc(c, p) - sklearn_auc(c, p)).max() <= 1e-9


def test_auc_chunks_and_threads_agree():
    c, p = tied_data("relu32", 700, 800, 2 * stats_rank.CHUNK + 7, seed=3)
    serial = stats_rank.u_statistics(c, p, threads=1)
    threaded = stats_rank.u_statistics(c, p, threads=2)
    np.testing.assert_array_equal(serial, threaded)
    cols = [0, stats_rank.CHUNK, c.shape[1] - 1]
    np.testing.assert_allclose(serial[cols] / (700 * 800), sklearn_auc(c[:, cols], p[:, cols]))


def test_small_chunks_and_many_images(monkeypatch):
    c, p = tied_data("mixed32", 30, 40, 50, seed=4)
    whole_auc, whole_delong = auc(c, p), delong_variance(c, p)
    monkeypatch.setattr(stats_rank, "CHUNK", 7)  # many chunks, a short last one
    np.testing.assert_array_equal(auc(c, p), whole_auc)
    np.testing.assert_allclose(delong_variance(c, p), whole_delong, rtol=1e-13)
    c, p = tied_data("relu32", 3000, 3100, 4, seed=6)  # float64 position sums
    assert np.abs(auc(c, p) - sklearn_auc(c, p)).max() <= 1e-9


def test_auc_shapes_and_known_values():
    assert auc(np.array([0.0, 1.0]), np.array([1.0, 2.0])).tolist() == [0.875]
    assert auc(np.zeros((3, 2)), np.ones((2, 2))).tolist() == [1.0, 1.0]
    assert auc(np.ones((3, 2)), np.ones((4, 2))).tolist() == [0.5, 0.5]
    assert auc(np.zeros((3, 0)), np.zeros((2, 0))).shape == (0,)
    np.testing.assert_array_equal(differentiability(np.array([0.1, 0.5, 0.7])), [0.9, 0.5, 0.7])


@pytest.mark.parametrize(
    ("clean", "probe", "match"),
    [
        (np.array([[np.nan]]), np.ones((1, 1)), "finite"),
        (np.ones((2, 3)), np.ones((2, 4)), "same number of units"),
        (np.ones((2, 2, 2)), np.ones((2, 2)), "1-D or 2-D"),
        (np.ones((0, 2)), np.ones((2, 2)), "at least one row"),
        (np.array([["a"]]), np.ones((1, 1)), "numeric"),
        (np.ones((2, 1), np.float32), np.array([[np.inf]], np.float32), "finite"),
    ],
)
def test_auc_rejects_bad_arguments(clean, probe, match):
    with pytest.raises(ValueError, match=match):
        auc(clean, probe)


# ---------------------------------------------------------------- DeLong and intervals


@pytest.mark.parametrize("kind", ["relu32", "mixed32", "float64", "int"])
def test_delong_variance_matches_reference(kind):
    c, p = tied_data(kind, 9, 13, 40, seed=5)
    a, v = delong_variance(c, p)
    ref = np.array([delong_reference(c[:, j], p[:, j]) for j in range(c.shape[1])])
    np.testing.assert_allclose(a, ref[:, 0], atol=1e-12)
    np.testing.assert_allclose(v, ref[:, 1], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(a, auc(c, p), atol=1e-12)


def test_delong_needs_two_rows():
    with pytest.raises(ValueError, match="at least 2 rows"):
        delong_variance(np.ones((1, 2)), np.ones((3, 2)))


def shifted_units(n: int, units: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Units with clean ~ N(0, 1), probe ~ N(delta, 1): true AUC = Phi(delta / sqrt(2))."""
    rng = np.random.default_rng(seed)
    delta = np.linspace(0.0, 1.5, units)
    clean = rng.normal(size=(n, units))
    probe = rng.normal(size=(n, units)) + delta
    return clean, probe, ndtr(delta / np.sqrt(2.0))


def test_delong_interval_covers_the_truth():
    clean, probe, truth = shifted_units(80, 400, seed=11)
    low, high = auc_ci(clean, probe, level=0.95)
    assert np.all((low >= 0) & (low <= high) & (high <= 1))
    coverage = np.mean((low <= truth) & (truth <= high))
    assert 0.90 <= coverage <= 0.99


@pytest.mark.parametrize("paired", [False, True])
def test_bootstrap_interval_covers_the_truth(paired):
    clean, probe, truth = shifted_units(80, 400, seed=12)
    low, high = auc_ci(clean, probe, method="bootstrap", n_boot=200, seed=1, paired=paired)
    coverage = np.mean((low <= truth) & (truth <= high))
    assert 0.90 <= coverage <= 0.99


def test_bootstrap_is_seeded_and_checks_arguments():
    c, p = tied_data("relu32", 20, 30, 5)
    np.testing.assert_array_equal(bootstrap_auc(c, p, 10, seed=3), bootstrap_auc(c, p, 10, seed=3))
    assert bootstrap_auc(c, p, 7).shape == (7, 5)
    with pytest.raises(ValueError, match="same number of rows"):
        bootstrap_auc(c, p, 5, paired=True)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_auc(c, p, 0)
    with pytest.raises(ValueError, match="method"):
        auc_ci(c, p, method="wald")
    with pytest.raises(ValueError, match="level"):
        auc_ci(c, p, level=1.5)


def test_pvalue_edge_cases():
    p = auc_pvalue(np.array([[0.0, 1.0], [0.0, 2.0]]), np.array([[0.0, 3.0], [0.0, 4.0]]))
    assert p.tolist() == [1.0, 0.0]  # constant unit; perfect separation


# ---------------------------------------------------------------- multiple testing


def test_bh_matches_scipy():
    fdc = pytest.importorskip("scipy.stats").false_discovery_control
    rng = np.random.default_rng(0)
    p = np.r_[rng.uniform(size=300), rng.uniform(0, 1e-3, 20), [0.5, 0.5, 1.0, 0.0]]
    q = bh_qvalues(p)
    np.testing.assert_allclose(q, fdc(p, method="bh"), rtol=1e-12)
    assert np.all(q >= p) and q.max() <= 1.0
    order = np.argsort(p)
    assert np.all(np.diff(q[order]) >= 0)  # monotone in p
    assert bh_qvalues(p.reshape(4, -1)).shape == (4, 81)


def test_bh_rejects_bad_p():
    with pytest.raises(ValueError, match="p-values"):
        bh_qvalues(np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="p-values"):
        bh_qvalues(np.array([1.2]))


@pytest.mark.parametrize("source", ["uniform", "delong"])
def test_bh_controls_fdr_on_pure_null(source):
    rng = np.random.default_rng(7)
    runs, units, alpha = 300, 40, 0.1
    if source == "uniform":
        p = rng.uniform(size=(runs, units))
    else:  # DeLong is liberal in the far tail for small samples: use 300 images per set
        null = rng.normal(size=(2, 300, runs * units)).astype(np.float32)
        p = auc_pvalue(null[0], null[1]).reshape(runs, units)
    fdp = [np.any(bh_qvalues(row) <= alpha) for row in p]  # under the null all are false
    assert np.mean(fdp) <= alpha + 0.04  # about two standard errors of a 300-run average


def test_planted_detector_is_found():
    rng = np.random.default_rng(8)
    clean, probe = rng.normal(size=(100, 201)), rng.normal(size=(100, 201))
    probe[:, 17] += 1.2
    q = bh_qvalues(auc_pvalue(clean, probe))
    assert q[17] < 0.05
    assert np.mean(np.delete(q, 17) < 0.05) <= 0.05


# ---------------------------------------------------------------- thresholds and stability


def test_thresholds_and_counts():
    null_d = np.linspace(0.5, 0.6, 1001)
    thr = null_threshold(null_d)
    assert thr == pytest.approx(0.5999)
    np.testing.assert_array_equal(calibrated_flags(np.array([0.5, 0.65]), thr), [False, True])
    assert count_above(np.array([0.7, 0.71, 0.96])) == {0.7: 2, 0.8: 1, 0.9: 1, 0.95: 1}
    assert count_above(np.array([0.85]), (0.8,)) == {0.8: 1}
    with pytest.raises(ValueError, match="quantile"):
        null_threshold(null_d, quantile=0.0)
    with pytest.raises(ValueError, match="null_d"):
        null_threshold(np.array([]))


def test_topk_jaccard():
    a = np.array([0.9, 0.8, 0.7, 0.1])
    assert topk_jaccard(a, a, 2) == 1.0
    assert topk_jaccard(a, np.array([0.1, 0.2, 0.8, 0.9]), 2) == 0.0
    assert topk_jaccard(np.ones(4), np.ones(4), 2) == 1.0  # ties: lower index first
    with pytest.raises(ValueError, match="`k`"):
        topk_jaccard(a, a, 5)
    with pytest.raises(ValueError, match="same shape"):
        topk_jaccard(a, a[:3], 1)


def test_split_half_stability():
    rng = np.random.default_rng(2)
    clean, probe = rng.normal(size=(300, 100)), rng.normal(size=(300, 100))
    assert split_half_stability(clean, probe, k=10, seed=0) < 0.5  # noise: unstable ranking
    probe[:, :10] += 1.5
    assert split_half_stability(clean, probe, k=10, seed=0) == 1.0
    assert split_half_stability(clean[:200], probe, k=10, seed=1) == 1.0  # unpaired sizes
    with pytest.raises(ValueError, match="paired"):
        split_half_stability(clean[:200], probe, k=10, paired=True)


def test_text_specific_separates_text_from_box():
    rng = np.random.default_rng(4)
    clean = rng.normal(size=(60, 3))
    placebo = clean + [2.0, 0.0, 0.0]  # unit 0: reacts to any box
    probe = clean + [2.0, 2.0, 0.0]  # unit 1: reacts to the text only
    ts = text_specific(clean, probe, placebo)
    np.testing.assert_array_equal(ts.specific, [False, True, False])
    assert ts.d[0] > 0.9 and ts.d_vs_placebo[0] == 0.5 and ts.auc_placebo[0] > 0.9
    with pytest.raises(ValueError, match="placebo"):
        text_specific(clean, probe, placebo[:, :2])


# ---------------------------------------------------------------- paired effect and table


def test_paired_effect():
    rng = np.random.default_rng(5)
    clean = rng.normal(size=(30, 4))
    probe = clean + rng.normal(0.5, 1.0, size=(30, 4))
    probe[:, 2] = clean[:, 2]  # no change at all
    probe[:, 3] = clean[:, 3] + 1.0  # constant shift
    e = paired_effect(clean, probe)
    diff = probe - clean
    np.testing.assert_allclose(e.mean_diff, diff.mean(axis=0))
    assert e.std_diff[0] == pytest.approx(diff[:, 0].mean() / diff[:, 0].std(ddof=1))
    assert e.wilcoxon_p[0] == pytest.approx(wilcoxon(diff[:, 0]).pvalue)  # exact, as scipy
    assert e.wilcoxon_p[1] == pytest.approx(wilcoxon(diff[:, 1]).pvalue)
    big = paired_effect(np.round(clean.repeat(3, 0), 1), np.round(probe.repeat(3, 0), 1))
    d3 = np.round(probe.repeat(3, 0), 1) - np.round(clean.repeat(3, 0), 1)
    assert big.wilcoxon_p[0] == pytest.approx(wilcoxon(d3[:, 0]).pvalue)  # normal approximation
    assert (e.std_diff[2], e.wilcoxon_p[2]) == (0.0, 1.0)
    assert e.std_diff[3] == np.inf or abs(e.std_diff[3]) > 1e6  # float noise may leave sd > 0
    with pytest.raises(ValueError, match="same number of rows"):
        paired_effect(clean[:10], probe)


def test_unit_table():
    c, p = tied_data("relu32", 50, 50, 7)
    t = unit_table(c, p)
    assert list(t.columns) == stats_mod.UNIT_TABLE_COLUMNS
    assert len(t) == 7 and t["unit"].tolist() == list(range(7))
    np.testing.assert_allclose(t["auc"], auc(c, p), atol=1e-12)
    np.testing.assert_allclose(t["q"], bh_qvalues(t["p"].to_numpy()))
    assert (t["ci_low"] <= t["auc"]).all() and (t["auc"] <= t["ci_high"]).all()
    assert t[["mean_diff", "std_diff", "wilcoxon_p"]].notna().all().all()
    unpaired = unit_table(c[:40], p)
    assert unpaired["wilcoxon_p"].isna().all() and isinstance(unpaired, pd.DataFrame)


@pytest.mark.parametrize("module", [stats_mod, intervals_mod])
def test_docstring_examples(module):
    result = doctest.testmod(module, extraglobs={"np": np})
    assert result.failed == 0


def test_auc_threads_follow_the_cpus_busy_now_not_the_minute_before(tmp_path, monkeypatch):
    monkeypatch.setattr(stats_rank, "THREADS", 4)
    loadavg = tmp_path / "loadavg"
    monkeypatch.setattr(stats_rank, "LOADAVG", str(loadavg))
    loadavg.write_text("8.00 7.50 6.00 1/300 4242\n")  # a minute of extraction, idle now
    assert stats_rank.busy_cpus() == 0.0 and stats_rank.default_threads() == 4
    loadavg.write_text("0.10 0.10 0.10 5/300 4242\n")  # four others running now
    assert stats_rank.busy_cpus() == 4.0 and stats_rank.default_threads() == 1
    loadavg.unlink()  # no /proc: the one-minute load average
    monkeypatch.setattr(stats_rank.os, "getloadavg", lambda: (3.5, 1.0, 1.0))
    assert stats_rank.busy_cpus() == 3.5 and stats_rank.default_threads() == 1


def test_statistics_inside_a_thread_map_job_stay_on_one_thread(monkeypatch):
    """A pooled job (the audit tables' blocks) does not start a pool of its own per call."""
    monkeypatch.setattr(stats_rank, "THREADS", 4)
    monkeypatch.setattr(stats_rank, "busy_cpus", lambda: 0.0)
    assert stats_rank.default_threads() == 4
    inner = stats_rank.thread_map(lambda _: stats_rank.default_threads(), [0, 1, 2], 3)
    assert inner == [1, 1, 1] and stats_rank.default_threads() == 4
    assert stats_rank.thread_map(lambda x: 2 * x, list(range(7)), 3) == list(range(0, 14, 2))
