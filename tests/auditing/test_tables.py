"""The table stage reads units in blocks: any block size gives the same tables."""

import numpy as np
import pandas as pd
import pytest

from wmprobe.auditing.tables import _unit_blocks, audit_table, stability_table
from wmprobe.extraction.activations import Activations


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


def test_unit_blocks_cover_every_unit_once_within_the_budget():
    acts = synthetic(n_images=40, units=7)
    for budget in (1, 39, 40, 41, 200, 10**6):
        blocks = _unit_blocks(acts, "logits", budget)
        assert [u for a, b in blocks for u in range(a, b)] == list(range(7))
        assert all((b - a) * 40 <= max(budget, 40) for a, b in blocks)
