"""CREAM consistency: Kendall tau-b by hand and against scipy, the [0, 1] mapping, the dataset mean."""

import math

import numpy as np
import pytest
from scipy.stats import kendalltau

from metareward.core.consistency import consistency, dataset_consistency, kendall_tau_b


def test_one_swap_without_ties():
    # Pairs (i, j), i < j, of x=[1,2,3,4], y=[1,3,2,4]: (0,1) (0,2) (0,3) (1,3) (2,3) concordant, (1,2)
    # discordant (x rises 2 -> 3, y falls 3 -> 2). n0 = 6, no ties: tau = (5 - 1) / 6 = 2/3, C = 5/6.
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    assert consistency([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(5 / 6)


def test_ties_on_each_side():
    # x=[1,2,2,3], y=[1,2,3,3]: (1,2) tied in x only, (2,3) tied in y only, the other 4 pairs concordant.
    # n0 = 6, n_x = n_y = 1: tau_b = (4 - 0) / sqrt(5 * 5) = 0.8, C = 0.9.
    assert kendall_tau_b([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    assert consistency([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.9)


def test_unequal_tie_counts():
    # x=[1,2,3,4], y=[1,1,2,1]: y ties (0,1) (0,3) (1,3); (0,2) (1,2) concordant; (2,3) discordant (y 2 -> 1).
    # n0 = 6, n_x = 0, n_y = 3: tau_b = (2 - 1) / sqrt(6 * 3) = 1 / sqrt(18).
    assert kendall_tau_b([1, 2, 3, 4], [1, 1, 2, 1]) == pytest.approx(1 / math.sqrt(18))


def test_pair_tied_on_both_sides():
    # x=[1,1,2], y=[3,3,1]: (0,1) tied in both (counted in n_x and in n_y); (0,2) (1,2) discordant.
    # n0 = 3, n_x = n_y = 1: tau_b = (0 - 2) / sqrt(2 * 2) = -1, C = 0.
    assert kendall_tau_b([1, 1, 2], [3, 3, 1]) == pytest.approx(-1.0)
    assert consistency([1, 1, 2], [3, 3, 1]) == pytest.approx(0.0)


def test_same_and_reversed_order_and_scale_invariance():
    assert consistency([0.5, 4.0, 2.0], [1, 3, 2]) == pytest.approx(1.0)
    assert consistency([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == pytest.approx(0.0)
    # Only the orders count: a monotone transform of one side changes nothing.
    x, y = [3.2, 1.0, 4.5, 4.5, 2.2], [2, 1, 5, 3, 3]
    assert kendall_tau_b(x, y) == pytest.approx(kendall_tau_b(np.exp(x), y))
    assert kendall_tau_b(x, y) == pytest.approx(kendall_tau_b(y, x))


@pytest.mark.parametrize(
    ("x", "y"),
    [([], []), ([3.0], [1.0]), ([2, 2, 2], [1, 2, 3]), ([1, 2, 3], [4, 4, 4]), ([1, 1], [2, 2])],
)
def test_undefined_is_none(x, y):
    assert kendall_tau_b(x, y) is None
    assert consistency(x, y) is None


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        ([1, 2, 3], [1, 2], "same items"),
        ([1, np.nan], [1, 2], "NaN"),
        ([1, 2], [np.inf, 2], "NaN or infinite"),
        ([[1, 2]], [[1, 2]], "flat"),
    ],
)
def test_invalid_inputs(x, y, message):
    with pytest.raises(ValueError, match=message):
        kendall_tau_b(x, y)


@pytest.mark.parametrize("seed", range(40))
def test_matches_scipy_on_small_vectors_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 9))
    # Few distinct values, so most draws have ties on one or both sides (and some are all tied).
    x, y = rng.integers(0, 4, size=n), rng.integers(0, 3, size=n) * 0.5
    expected = kendalltau(x, y).statistic
    ours = kendall_tau_b(x, y)
    if np.isnan(expected):
        assert ours is None
    else:
        assert ours == pytest.approx(expected, abs=1e-12)
        assert consistency(x, y) == pytest.approx((expected + 1) / 2, abs=1e-12)


def test_dataset_consistency_averages_defined_values():
    assert dataset_consistency([0.5, None, 1.0]) == pytest.approx(0.75)
    assert dataset_consistency(iter([5 / 6, 0.9, None, 0.0])) == pytest.approx((5 / 6 + 0.9) / 3)
    assert dataset_consistency([None, None]) is None
    assert dataset_consistency([]) is None
