"""Bradley-Terry fit against independent solvers (scipy, sklearn) and hand examples."""

import numpy as np
import pytest
from scipy.optimize import minimize

from metareward.core.elo import bradley_terry_elo, has_finite_mle
from metareward.core.judge_pairs import battle_matrix, ordered_pairs, positional_weights


def scipy_fit(battles: np.ndarray, l2: float) -> np.ndarray:
    """Independent reference: L-BFGS on the negated objective, written here with explicit loops."""
    n = battles.shape[0]
    pairs = [(m, k) for m in range(n) for k in range(n) if m != k and battles[m, k] > 0]

    def loss_and_grad(eps):
        loss, grad = 0.5 * l2 * eps @ eps, l2 * eps.copy()
        for m, k in pairs:
            x = eps[m] - eps[k]
            loss += battles[m, k] * np.log1p(np.exp(-x))
            lose_prob = 1.0 / (1.0 + np.exp(x))
            grad[m] -= battles[m, k] * lose_prob
            grad[k] += battles[m, k] * lose_prob
        return loss, grad

    result = minimize(
        loss_and_grad,
        np.zeros(n),
        jac=True,
        method="L-BFGS-B",
        options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 10_000},
    )
    return result.x - result.x.mean()


def dense_random(seed: int, n: int) -> np.ndarray:
    battles = np.random.default_rng(seed).uniform(0.0, 3.0, size=(n, n))
    np.fill_diagonal(battles, 0.0)
    return battles


def meta_judge_like(seed: int, n: int) -> np.ndarray:
    """Sparse, lopsided matrices as the loop makes them: random verdicts, weighted against position bias."""
    rng = np.random.default_rng(seed)
    verdicts = {pair: int(rng.choice([-1, 0, 1], p=[0.3, 0.2, 0.5])) for pair in ordered_pairs(n)}
    return battle_matrix(n, verdicts, *positional_weights(verdicts.values()))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("make", [dense_random, meta_judge_like])
def test_matches_scipy_with_ridge(seed, make):
    battles = make(seed, n=3 + 2 * seed)
    expected = scipy_fit(battles, l2=1e-3)
    np.testing.assert_allclose(bradley_terry_elo(battles, l2=1e-3), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("seed", range(4))
def test_matches_scipy_without_ridge_when_connected(seed):
    battles = dense_random(100 + seed, n=6)
    assert has_finite_mle(battles)
    elo = bradley_terry_elo(battles, l2=0.0)
    assert abs(elo.mean()) < 1e-12
    np.testing.assert_allclose(elo, scipy_fit(battles, l2=0.0), atol=1e-5, rtol=0)


def test_matches_sklearn_logistic_regression():
    # Each weighted battle "m beat k" is a sample x = e_m - e_k with label 1, mirrored as -x with label 0;
    # the mirror doubles the log-likelihood, which leaves the maximiser unchanged (C=1e12: no real penalty).
    sklearn_linear = pytest.importorskip("sklearn.linear_model")
    battles = dense_random(7, n=5)
    rows, labels, weights = [], [], []
    for m, k in ordered_pairs(5):
        x = np.zeros(5)
        x[m], x[k] = 1.0, -1.0
        rows += [x, -x]
        labels += [1, 0]
        weights += [battles[m, k]] * 2
    model = sklearn_linear.LogisticRegression(C=1e12, fit_intercept=False, tol=1e-12, max_iter=10_000)
    model.fit(np.array(rows), np.array(labels), sample_weight=np.array(weights))
    coef = model.coef_[0] - model.coef_[0].mean()
    np.testing.assert_allclose(bradley_terry_elo(battles, l2=0.0), coef, atol=1e-4, rtol=0)


def test_obvious_order_and_centering():
    # 0 beats everyone most of the time, 1 beats 2 most of the time.
    battles = np.array([[0, 3, 3], [1, 0, 3], [1, 1, 0]], dtype=float)
    elo = bradley_terry_elo(battles)
    assert elo[0] > elo[1] > elo[2]
    assert abs(elo.sum()) < 1e-9
    # A strict chain (m beats every later n, never loses to one): finite, strictly decreasing strengths.
    chain = bradley_terry_elo(np.triu(np.ones((6, 6)), k=1))
    assert np.all(np.isfinite(chain)) and np.all(np.diff(chain) < 0)
    # Symmetric battles: everyone equal.
    np.testing.assert_allclose(bradley_terry_elo(np.ones((4, 4))), np.zeros(4), atol=1e-12)


def test_undefeated_judgment_stays_finite():
    battles = np.array([[0, 2, 2], [0, 0, 1], [0, 1, 0]], dtype=float)  # 0 never loses
    assert not has_finite_mle(battles)
    ridge = bradley_terry_elo(battles, l2=1e-3)
    assert np.all(np.isfinite(ridge)) and ridge[0] > ridge[1] and ridge[0] > ridge[2]
    np.testing.assert_allclose(ridge, scipy_fit(battles, l2=1e-3), atol=1e-5, rtol=0)
    # l2 == 0 with no finite MLE falls back to the documented ridge.
    np.testing.assert_allclose(bradley_terry_elo(battles, l2=0.0), ridge, atol=1e-12)
    np.testing.assert_allclose(
        bradley_terry_elo(battles, l2=0.0, fallback_l2=0.1), bradley_terry_elo(battles, l2=0.1), atol=1e-12
    )


def test_has_finite_mle():
    assert has_finite_mle(np.array([[0, 1], [1, 0]]))
    assert not has_finite_mle(np.array([[0, 1], [0, 0]]))
    assert not has_finite_mle(np.zeros((2, 2)))
    assert has_finite_mle(np.zeros((1, 1)))
    # Cycle 0 -> 1 -> 2 -> 0 is strongly connected.
    assert has_finite_mle(np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]]))


def test_diagonal_is_ignored_and_trivial_sizes():
    battles = np.array([[5.0, 2.0], [1.0, 9.0]])
    np.testing.assert_allclose(bradley_terry_elo(battles), bradley_terry_elo(np.array([[0, 2.0], [1.0, 0]])))
    assert bradley_terry_elo(np.zeros((0, 0))).shape == (0,)
    np.testing.assert_array_equal(bradley_terry_elo(np.zeros((1, 1))), [0.0])
    np.testing.assert_array_equal(bradley_terry_elo(np.zeros((3, 3)), l2=0.0), np.zeros(3))


@pytest.mark.parametrize(
    ("battles", "message"),
    [
        (np.zeros((2, 3)), "square"),
        (np.zeros(3), "square"),
        (np.array([[0, -1.0], [1, 0]]), "negative"),
        (np.array([[0, np.nan], [1, 0]]), "NaN"),
        (np.array([[0, np.inf], [-1, 0]]), "NaN or infinite entries; it contains negative"),
    ],
)
def test_invalid_battles(battles, message):
    with pytest.raises(ValueError, match=message):
        bradley_terry_elo(battles)


def test_negative_l2():
    with pytest.raises(ValueError, match="l2"):
        bradley_terry_elo(np.zeros((2, 2)), l2=-1.0)
