"""The table stage reads units in blocks: any block size gives the same tables."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wmprobe.auditing import tables
from wmprobe.auditing.tables import (
    _unit_blocks,
    audit_table,
    permutation_null_d,
    sign_flip_masks,
    stability_table,
)
from wmprobe.extraction.activations import Activations
from wmprobe.stats.core import auc, differentiability
from wmprobe.stats.rank import swapped_u_statistics


def null_by_sorting_each_permutation(c, p, swaps):
    """The definition: d of each sign-flipped pair of matrices, one AUC (one sort) each."""
    out = np.empty((swaps.shape[0], c.shape[1]))
    for i, swap in enumerate(swaps):
        s = swap[:, None]
        out[i] = differentiability(auc(np.where(s, p, c), np.where(s, c, p)))
    return out


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(1, 4),
    st.sampled_from([np.float32, np.float64]),
    st.sampled_from([[-1.5, -0.0, 0.0, 0.25, 1.0, 1e30, -3e-8], [0.0, 1.0, 2.0], [0.1, 0.2, 0.0]]),
    st.data(),
)
def test_the_permutation_null_equals_one_auc_per_permutation_exactly(n, units, dtype, pool, data):
    draw = st.lists(st.sampled_from(pool), min_size=n * units, max_size=n * units)
    c = np.array(data.draw(draw), dtype).reshape(n, units)
    p = np.array(data.draw(draw), dtype).reshape(n, units)
    swaps = sign_flip_masks(n, 7, seed=data.draw(st.integers(0, 3)))
    np.testing.assert_array_equal(
        permutation_null_d(c, p, swaps=swaps), null_by_sorting_each_permutation(c, p, swaps)
    )


def test_the_permutation_null_takes_one_sort_for_many_units_with_ties():
    rng = np.random.default_rng(5)
    c = np.maximum(rng.normal(size=(300, 700)), 0).astype(np.float32)  # many exact zeros
    p = np.maximum(c + rng.normal(scale=0.5, size=c.shape), 0).astype(np.float32)
    p[:, :40] = c[:, :40]  # units the probe does not move
    swaps = sign_flip_masks(300)
    assert swapped_u_statistics(c, p, swaps) is not None  # the one-sort path, in several chunks
    np.testing.assert_array_equal(
        permutation_null_d(c, p, swaps=swaps), null_by_sorting_each_permutation(c, p, swaps)
    )
    assert swapped_u_statistics(c + np.float64(0.1), p, swaps) is None  # no float32 keys


def test_the_permutation_null_refuses_nan():
    c = np.zeros((4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="finite"):
        permutation_null_d(c, np.full((4, 2), np.nan, dtype=np.float32))


def synthetic(n_images=40, units=7, seed=0):
    rng = np.random.default_rng(seed)
    variants = ("clean", "latin", "latin+placebo_box", "latin+placebo_noise", "numerals")
    clean = rng.normal(size=(n_images, units))
    shift = np.linspace(-2, 2, units)
    values = [clean]
    values.append(clean + shift + rng.normal(scale=0.5, size=clean.shape))
    values.append(clean + 0.3 * shift + rng.normal(scale=0.5, size=clean.shape))
    values.append(clean + rng.normal(scale=0.5, size=clean.shape))
    values.append(clean + shift[::-1] + rng.normal(scale=0.5, size=clean.shape))
    layer = np.stack(values, axis=1).astype(np.float32)
    return Activations(
        model="synthetic",
        image_ids=[f"i{i}" for i in range(n_images)],
        labels=np.zeros(n_images, dtype=int),
        variants=variants,
        values={"logits": layer, "features": layer[:, :, :5] * 2},
    )


@pytest.mark.parametrize("block_elements", [1, 40, 80, 120, 10**9])
def test_tables_do_not_depend_on_the_block_size(block_elements):
    acts = synthetic()
    names = [f"c{i}" for i in range(7)]
    whole = audit_table(acts, names)
    pd.testing.assert_frame_equal(audit_table(acts, names, block_elements=block_elements), whole)
    pd.testing.assert_frame_equal(
        stability_table(acts, k=3, block_elements=block_elements), stability_table(acts, k=3)
    )
    # the placebo columns are filled for latin only, and the strong units are text detectors
    latin = whole[(whole.layer == "logits") & (whole.scenario == "latin")]
    assert latin["placebo_d"].notna().all()
    assert latin["text_detector"].iloc[[0, -1]].all()
    assert whole.loc[whole.scenario == "numerals", "placebo_d"].isna().all()


@pytest.mark.parametrize("threads", [2, 3])
def test_tables_do_not_depend_on_the_thread_count(threads, monkeypatch):
    """Blocks worked on by several threads come back in unit order."""
    acts = synthetic(units=23)
    names = [f"c{i}" for i in range(23)]
    monkeypatch.setattr(tables, "default_threads", lambda: 1)
    serial = (
        audit_table(acts, names, block_elements=80),
        stability_table(acts, 3, block_elements=80),
    )
    monkeypatch.setattr(tables, "default_threads", lambda: threads)
    pd.testing.assert_frame_equal(audit_table(acts, names, block_elements=80), serial[0])
    pd.testing.assert_frame_equal(stability_table(acts, 3, block_elements=80), serial[1])


def test_unit_blocks_cover_every_unit_once_within_the_budget():
    acts = synthetic(n_images=40, units=7)
    for budget in (1, 39, 40, 41, 200, 10**6):
        blocks = _unit_blocks(acts, "logits", budget)
        assert [u for a, b in blocks for u in range(a, b)] == list(range(7))
        assert all((b - a) * 40 <= max(budget, 40) for a, b in blocks)
