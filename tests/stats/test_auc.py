import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from wmprobe.stats.core import auc, differentiability


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    clean = rng.integers(0, 5, size=(97, 40)).astype(float)  # many ties
    probe = rng.integers(0, 6, size=(83, 40)).astype(float)
    got = auc(clean, probe)
    labels = np.r_[np.zeros(97), np.ones(83)]
    want = [roc_auc_score(labels, np.r_[clean[:, u], probe[:, u]]) for u in range(40)]
    np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)


def test_auc_direction_and_d():
    clean = np.zeros((5, 2))
    probe = np.array([[1.0, -1.0]] * 5)
    a = auc(clean, probe)
    np.testing.assert_array_equal(a, [1.0, 0.0])
    np.testing.assert_array_equal(differentiability(a), [1.0, 1.0])
    np.testing.assert_array_equal(differentiability([0.3, 0.5, 0.8]), [0.7, 0.5, 0.8])


def test_auc_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same number of units"):
        auc(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="finite"):
        auc(np.array([np.nan]), np.array([1.0]))
