"""Mitigation on arrays: ranking, heads, the sweep and its figures (no model, no images)."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from wmprobe.errors import MitigationError
from wmprobe.mitigation import (
    MaskedHead,
    SweepConfig,
    SweepInputs,
    choose_C,
    fit_head,
    rank_units,
    run_sweep,
    split_indices,
)
from wmprobe.mitigation.figures import (
    auc_distribution,
    auc_distribution_data,
    fraction_curves,
    save_figure,
)
from wmprobe.mitigation.heads import standardiser
from wmprobe.mitigation.ranking import kept_units, random_order

N_UNITS, SENSITIVE_UNITS = 20, [3, 7, 11, 15]


def planted(seed: int = 0, n_down: int = 240, n_probe: int = 120, classes: int = 4) -> SweepInputs:
    """Every unit carries class signal; units 3, 7, 11, 15 also jump when the text is drawn."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.2, size=(classes, N_UNITS))
    # The text-sensitive units are high for class 0: the text pushes predictions towards it.
    centres[:, SENSITIVE_UNITS] = np.where(np.arange(classes)[:, None] == 0, 2.0, -1.0)
    labels = np.arange(n_down) % classes
    down = centres[labels] + rng.normal(size=(n_down, N_UNITS))
    shift = np.zeros(N_UNITS)
    shift[SENSITIVE_UNITS] = 6.0

    def probe_of(x):
        return x + shift + rng.normal(0, 0.05, size=x.shape)

    probe_clean = rng.normal(size=(n_probe, N_UNITS))
    return SweepInputs(
        probe_clean=probe_clean,
        probe={"chinese": probe_of(probe_clean)},
        down_clean=down,
        down_probe={"chinese": probe_of(down)},
        labels=labels,
        n_classes=classes,
    )


def test_rank_units_by_d_max_and_null():
    d = {"a": np.array([0.5, 0.9, 0.7, 0.6]), "b": np.array([0.95, 0.5, 0.5, 0.6])}
    assert rank_units(d["a"]).tolist() == [1, 2, 3, 0]
    assert rank_units(d, method="d").tolist() == [1, 2, 3, 0]  # first scenario
    assert rank_units(d, method="max").tolist() == [0, 1, 2, 3]
    # Unit 0 has the largest d but also a high null: it drops behind units 1 and 2.
    null = np.array([[0.9, 0.55, 0.5, 0.6], [0.92, 0.6, 0.52, 0.61], [0.91, 0.5, 0.55, 0.58]])
    order = rank_units(d, method="null", null_d=null, null_quantile=0.9)
    assert order.tolist() == [1, 2, 0, 3]
    assert rank_units(np.array([0.6, 0.6, 0.6])).tolist() == [0, 1, 2]  # ties keep unit order
    with pytest.raises(MitigationError, match="null_d"):
        rank_units(d, method="null")
    with pytest.raises(MitigationError, match="shape"):
        rank_units(d, method="null", null_d=np.zeros((2, 3)))
    with pytest.raises(MitigationError, match="Unknown ranking"):
        rank_units(d, method="best")


def test_kept_units_and_random_orders():
    order = np.array([4, 2, 0, 1, 3])
    assert kept_units(order, 0.4).tolist() == [0, 1, 3]
    assert kept_units(order, 0.0).tolist() == [0, 1, 2, 3, 4]
    a, b = random_order(50, seed=0, draw=0), random_order(50, seed=0, draw=1)
    assert sorted(a.tolist()) == list(range(50)) and not np.array_equal(a, b)
    assert np.array_equal(a, random_order(50, seed=0, draw=0))


def test_split_is_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(5), [10, 10, 3, 2, 1])
    train, test = split_indices(labels, test_fraction=0.2, seed=1)
    assert not set(train) & set(test) and len(train) + len(test) == len(labels)
    assert np.bincount(labels[test], minlength=5).tolist() == [2, 2, 1, 1, 0]
    again = split_indices(labels, test_fraction=0.2, seed=1)
    assert np.array_equal(test, again[1])
    assert not np.array_equal(test, split_indices(labels, test_fraction=0.2, seed=2)[1])
    with pytest.raises(MitigationError, match="test_fraction"):
        split_indices(labels, test_fraction=1.0)


def test_head_matches_scikit_learn_logistic_regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12))
    y = rng.integers(0, 3, 300)
    x[np.arange(300), y] += 1.0
    kept = np.array([0, 2, 3, 5, 8, 11])
    head = fit_head(x, y, n_classes=3, kept=kept, C=0.3, dtype=torch.float64, tol=1e-9)
    mean, scale = standardiser(x[:, kept])
    ref = LogisticRegression(C=0.3, tol=1e-10, max_iter=5000).fit((x[:, kept] - mean) / scale, y)
    np.testing.assert_allclose(head.weight, ref.coef_, atol=1e-4)
    np.testing.assert_array_equal(head.predict(x), ref.predict((x[:, kept] - mean) / scale))


def test_left_out_units_have_no_influence_on_the_head():
    inputs = planted()
    kept = np.array([0, 1, 2, 4, 5, 6, 8, 9, 10, 12])
    head = fit_head(inputs.down_clean, inputs.labels, n_classes=4, kept=kept, C=1.0)
    x = inputs.down_clean[:50].copy()
    perturbed = x.copy()
    left_out = np.setdiff1d(np.arange(N_UNITS), kept)
    perturbed[:, left_out] = np.random.default_rng(1).normal(0, 1e6, size=(50, len(left_out)))
    np.testing.assert_array_equal(head.logits(x), head.logits(perturbed))
    # ... and the same through the torch module that gets exported.
    module = MaskedHead.from_head(head)
    assert module.mask.sum().item() == len(kept)
    with torch.no_grad():
        a = module(torch.from_numpy(x).float())
        perturbed[:, left_out] = np.nan
        b = module(torch.from_numpy(perturbed).float())
    assert torch.equal(a, b)
    np.testing.assert_allclose(a.numpy(), head.logits(x), rtol=1e-4, atol=1e-4)
    # A kept unit does influence it (the test above could fail).
    moved = x.copy()
    moved[:, kept[0]] += 10
    assert not np.allclose(head.logits(moved), head.logits(x))


def test_warm_start_reaches_the_same_head():
    inputs = planted()
    full = fit_head(inputs.down_clean, inputs.labels, n_classes=4, C=0.5, tol=1e-7)
    kept = np.arange(2, N_UNITS)
    cold = fit_head(inputs.down_clean, inputs.labels, n_classes=4, kept=kept, C=0.5, tol=1e-7)
    warm = fit_head(
        inputs.down_clean, inputs.labels, n_classes=4, kept=kept, C=0.5, init=full, tol=1e-7
    )
    np.testing.assert_allclose(warm.weight, cold.weight, atol=2e-3)


def test_choose_C_uses_only_the_rows_given():
    inputs = planted()
    best, rows = choose_C(
        inputs.down_clean, inputs.labels, n_classes=4, grid=(0.001, 1.0), n_folds=3
    )
    assert len(rows) == 6 and {r["fold"] for r in rows} == {0, 1, 2}
    means = {c: np.mean([r["accuracy"] for r in rows if r["C"] == c]) for c in (0.001, 1.0)}
    assert means[best] == max(means.values())
    # The folds split the rows given, class by class.
    other, _ = choose_C(
        inputs.down_clean[:120], inputs.labels[:120], n_classes=4, grid=(0.001, 1.0), n_folds=3
    )
    assert other in (0.001, 1.0)


def test_sweep_removes_the_planted_watermark_dependence():
    inputs = planted()
    fractions = [0, 0.1, 0.2, 0.5]
    result = run_sweep(
        inputs,
        SweepConfig(fractions=fractions, seeds=[0, 1], random_draws=3, C=1.0),
        progress=False,
    )
    ranked = result.feature_d.sort_values("rank")["unit"].tolist()
    assert sorted(ranked[:4]) == SENSITIVE_UNITS
    table = result.table().set_index("fraction")
    assert len(result.runs) == len(fractions) * 2 * (1 + 3)
    assert table.loc[0, "max_d"] > 0.9 and table.loc[0, "flip_rate"] > 0.1
    # All four planted units are out at 20%: the outputs no longer tell the text apart.
    assert table.loc[0.2, "max_d"] < 0.7 and table.loc[0.2, "d>0.7"] == 0
    assert table.loc[0.2, "flip_rate"] < 0.05
    assert table.loc[0.2, "random_max_d"] > 0.8  # random 20% keeps some of the planted units
    assert table.loc[0.2, "accuracy"] > 0.6  # the class signal is spread over every unit
    assert (result.runs.loc[result.runs["fraction"] == 0, "accuracy_change"] == 0).all()
    one = result.runs[(result.runs["seed"] == 1) & (result.runs["ranking"] == "sensitive")]
    np.testing.assert_allclose(one["accuracy_change"], one["accuracy"] - one["accuracy"].iloc[0])
    assert set(result.heads) == set(fractions)
    assert result.units.groupby(["seed", "ranking", "draw", "fraction"]).size().eq(4).all()
    assert {"ranking", "heads", "evaluation"} <= set(result.timings)


def test_sweep_with_cv_records_the_choice_on_training_rows():
    inputs = planted()
    config = SweepConfig(fractions=[0, 0.2], cv=True, C_grid=(0.01, 1.0), n_folds=2)
    result = run_sweep(inputs, config, progress=False)
    assert result.cv["chosen"].sum() == 2  # one C per fold, chosen once for the seed
    assert result.runs["C"].nunique() == 1 and result.runs["C"].iloc[0] in (0.01, 1.0)


def test_bad_sweep_inputs_are_clear_errors():
    inputs = planted()
    with pytest.raises(MitigationError, match=r"in \[0, 1\)"):
        run_sweep(inputs, SweepConfig(fractions=[0, 1.5]), progress=False)
    inputs.down_clean = inputs.down_clean[:, :5]
    with pytest.raises(MitigationError, match="same model layer|shape"):
        run_sweep(inputs, SweepConfig(fractions=[0]), progress=False)


def test_figures_are_written_with_their_numbers(tmp_path):
    result = run_sweep(
        planted(), SweepConfig(fractions=[0, 0.2], random_draws=2, C=1.0), progress=False
    )
    table = result.table()
    paths = save_figure(fraction_curves(table, title="planted"), table, tmp_path, "curves")
    assert [p.suffix for p in paths] == [".png", ".svg", ".csv"]
    assert all(p.stat().st_size > 1000 for p in paths[:2])
    pd.testing.assert_frame_equal(pd.read_csv(paths[2]), table, check_dtype=False)
    data = auc_distribution_data(result.units)
    assert set(data["ranking"]) == {"sensitive", "random"} and (
        data.set_index("ranking")["count"].to_dict() == {"random": 8, "sensitive": 4}
    )
    save_figure(auc_distribution(result.units), data, tmp_path, "dist")
    assert (tmp_path / "dist.svg").read_text().startswith("<?xml")


def test_max_ranking_over_two_scenarios_removes_both_dependences():
    inputs = planted()
    rng = np.random.default_rng(5)
    # A second scenario moves two other units; d of an output unit is its largest over both.
    shift = np.zeros(N_UNITS)
    shift[[0, 1]] = 6.0
    inputs.probe["latin"] = (
        inputs.probe_clean + shift + rng.normal(0, 0.05, inputs.probe_clean.shape)
    )
    inputs.down_probe["latin"] = inputs.down_clean + shift
    fractions = [0, 0.2, 0.3]
    by_d = run_sweep(inputs, SweepConfig(fractions=fractions, C=1.0), progress=False)
    by_max = run_sweep(
        inputs, SweepConfig(fractions=fractions, ranking="max", C=1.0), progress=False
    )
    top = by_max.feature_d.sort_values("rank")["unit"].tolist()[:6]
    assert sorted(top) == sorted(SENSITIVE_UNITS + [0, 1])
    d_max = by_max.table().set_index("fraction")["max_d"]
    d_first = by_d.table().set_index("fraction")["max_d"]
    assert d_max.loc[0.3] < 0.7 < d_first.loc[0.3]  # ranking by chinese alone keeps units 0, 1
    assert set(by_max.units["scenario"]) == {"chinese", "latin"}
