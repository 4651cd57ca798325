"""Pairwise-judge rankings: hand-worked battle matrices, Copeland counts, Bradley-Terry against scipy."""

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from metareward.core.judge_pairs import battle_matrix, ordered_pairs, positional_weights
from metareward.core.pairwise import PAIRWISE_RANKINGS, bradley_terry_scores, copeland_scores, rank_scores

# Three responses, every ordered pair judged. (first, second): verdict -> the entry of B it adds to.
HAND = {
    (0, 1): 1,  # 0 wins from the first slot   -> B[0,1] += w1
    (1, 0): -1,  # 0 wins from the second slot -> B[0,1] += w2
    (0, 2): 1,  # 0 wins from the first slot   -> B[0,2] += w1
    (2, 0): 1,  # 2 wins from the first slot   -> B[2,0] += w1
    (1, 2): 0,  # tie                           -> nothing
    (2, 1): -1,  # 1 wins from the second slot -> B[1,2] += w2
}


def test_hand_example_battles_and_copeland():
    expected = np.array([[0, 2, 1], [0, 0, 1], [1, 0, 0]], dtype=float)  # w1 = w2 = 1
    np.testing.assert_array_equal(battle_matrix(3, HAND, 1.0, 1.0), expected)
    # 0 vs 1: 2 > 0, 0 wins; 0 vs 2: 1 = 1, even; 1 vs 2: 1 > 0, 1 wins.
    # copeland = (+1 + 0, -1 + 1, 0 - 1) = (1, 0, -1).
    np.testing.assert_array_equal(copeland_scores(3, HAND, 1.0, 1.0), [1, 0, -1])


def test_hand_example_bradley_terry():
    # Wins 0->1, 1->2, 2->0 make the graph strongly connected, so the l2 = 0 MLE exists. Its equations say
    # expected wins = actual wins. 1 and 2 both won once, in one game against each other and two against 0,
    # so eps_1 = eps_2 = b. Response 0 won 3 of its 4 games: 4 * sigmoid(a - b) = 3, a - b = ln 3; with
    # a + 2b = 0: a = 2 ln 3 / 3, b = -ln 3 / 3. (Check for 1: 2 * sigmoid(-ln 3) + sigmoid(0) = 1/2 + 1/2 = 1.)
    # Copeland separates 1 from 2 (1 beat 2 directly); Bradley-Terry does not.
    third = math.log(3) / 3
    np.testing.assert_allclose(bradley_terry_scores(3, HAND, 1.0, 1.0, l2=0.0), [2 * third, -third, -third], atol=1e-9)


# 1 beats 0 from the first slot, 2 beats 0 from the second slot, 1 vs 2 each wins from the first slot.
WEIGHTED = {(1, 0): 1, (0, 1): 0, (0, 2): -1, (2, 0): 0, (1, 2): 1, (2, 1): 1}


def test_positional_weights_break_a_tie_in_bradley_terry():
    # B = [[0, 0, 0], [w1, 0, w1], [w2, w1, 0]]: 1 and 2 are mirror images exactly when w1 = w2.
    np.testing.assert_array_equal(battle_matrix(3, WEIGHTED, 0.2, 0.8), [[0, 0, 0], [0.2, 0, 0.2], [0.8, 0.2, 0]])
    even = bradley_terry_scores(3, WEIGHTED, 1.0, 1.0, l2=0.1)
    assert even[1] == pytest.approx(even[2], abs=1e-9) and even[0] < even[1]
    # Pooled over these verdicts: 3 first-slot wins, 1 second-slot win -> w1 = 1/4, w2 = 3/4. The judge favours
    # the first slot, so 2's win from the second slot counts for more and lifts 2 above 1.
    w1, w2 = positional_weights(WEIGHTED.values())
    assert (w1, w2) == (0.25, 0.75)
    discounted = bradley_terry_scores(3, WEIGHTED, w1, w2, l2=0.1)
    assert discounted[2] > discounted[1] > discounted[0]
    flipped = bradley_terry_scores(3, WEIGHTED, w2, w1, l2=0.1)
    assert flipped[1] > flipped[2] > flipped[0]


def test_copeland_ignores_positive_weights_but_not_a_zero_weight():
    # 0 loses to both, 1 vs 2 even (w1 against w1): (-2, 1, 1) whatever positive weights are used.
    for w1, w2 in [(1.0, 1.0), (0.25, 0.75), (0.9, 0.1)]:
        np.testing.assert_array_equal(copeland_scores(3, WEIGHTED, w1, w2), [-2, 1, 1])
    # w1 = 0 (no second-slot win all iteration): only 2's win over 0 remains, B = [[0,0,0],[0,0,0],[1,0,0]].
    np.testing.assert_array_equal(copeland_scores(3, WEIGHTED, 0.0, 1.0), [-1, 0, 1])


def reference_fit(verdicts: dict, w1: float, w2: float, l2: float, n: int) -> np.ndarray:
    """Independent BT fit straight from the verdicts (no battle matrix): BFGS on the penalised likelihood."""
    games = [(f, s, w1) if v == 1 else (s, f, w2) for (f, s), v in verdicts.items() if v != 0]
    winners, losers, weights = (np.array(column) for column in zip(*games))

    def loss_and_grad(eps):
        margin = eps[winners] - eps[losers]
        loss = np.sum(weights * np.logaddexp(0.0, -margin)) + 0.5 * l2 * eps @ eps
        pull = weights / (1.0 + np.exp(margin))  # weight * P(loser would have won)
        grad = l2 * eps
        np.add.at(grad, winners, -pull)
        np.add.at(grad, losers, pull)
        return loss, grad

    result = minimize(loss_and_grad, np.zeros(n), jac=True, method="BFGS", options={"gtol": 1e-10, "maxiter": 10_000})
    return result.x - result.x.mean()


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("l2", [1e-3, 0.1])
def test_bradley_terry_matches_reference_fit(seed, l2):
    rng = np.random.default_rng(seed)
    n = 3 + seed % 5
    verdicts = {pair: int(rng.choice([-1, 0, 1], p=[0.35, 0.15, 0.5])) for pair in ordered_pairs(n)}
    w1, w2 = positional_weights(verdicts.values())
    ours = rank_scores("bradley_terry", n, verdicts, w1, w2, l2=l2)
    np.testing.assert_allclose(ours, reference_fit(verdicts, w1, w2, l2, n), atol=1e-5, rtol=0)
    copeland = rank_scores("copeland", n, verdicts, w1, w2, l2=l2)
    assert copeland.sum() == 0 and np.all(np.abs(copeland) <= n - 1)
    np.testing.assert_array_equal(copeland, copeland_scores(n, verdicts, 1.0, 1.0))


def test_rank_scores_names_and_errors():
    assert sorted(PAIRWISE_RANKINGS) == ["bradley_terry", "copeland"]
    with pytest.raises(ValueError, match="'borda'; use one of: bradley_terry, copeland"):
        rank_scores("borda", 3, HAND, 1.0, 1.0, l2=0.0)
    with pytest.raises(ValueError, match="responses must be >= 0"):
        copeland_scores(-1, {}, 1.0, 1.0)
    with pytest.raises(ValueError, match="w1=-0.5"):
        bradley_terry_scores(3, HAND, -0.5, 1.0, l2=0.0)
    with pytest.raises(ValueError, match="distinct judgments"):
        copeland_scores(2, {(0, 2): 1}, 1.0, 1.0)
    assert copeland_scores(0, {}, 1.0, 1.0).shape == (0,)
