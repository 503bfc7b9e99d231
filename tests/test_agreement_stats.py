"""Rank statistics against scipy's reference implementations."""

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from perceptlab.analysis.agreement_stats import label_order, matrix_rank_correlations
from perceptlab.analysis.stats import ranks, spearman


def test_ranks_average_ties_like_scipy():
    x = np.array([3.0, 1.0, 2.0, 2.0, 5.0, 1.0, 2.0])
    np.testing.assert_array_equal(ranks(x), rankdata(x))


def test_spearman_equals_scipy():
    rng = np.random.default_rng(0)
    a = rng.random(500)
    b = a + 0.3 * rng.random(500)
    b[::7] = b[0]  # ties
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_matrix_rank_correlations():
    rng = np.random.default_rng(1)
    p = rng.random((6, 3))
    d1 = np.linalg.norm(p[:, None] - p[None], axis=-1)
    corr = matrix_rank_correlations({"x": d1, "y": d1 ** 2, "z": -d1})
    assert corr[("x", "y")] == pytest.approx(1.0)
    assert corr[("x", "z")] == pytest.approx(-1.0)


def test_label_order_groups_labels_stably():
    assert list(label_order(["b", "a", None, "a", "b"])) == [1, 3, 0, 4, 2]
