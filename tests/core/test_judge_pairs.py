"""Judge pair pieces: variance pick, ordered pairs, positional weights, battle matrix, final pick."""

import numpy as np
import pytest

from metareward.core.elo import bradley_terry_elo
from metareward.core.judge_pairs import (
    JudgeChoice,
    battle_matrix,
    highest_variance_response,
    mean_valid_score,
    ordered_pairs,
    positional_weights,
    select_judge_pair,
)

# Hand-worked example with 3 judgments; key (m, n) = judgment m shown first, n second.
#   r^{01} = +1  (0 shown first, wins)        r^{10} = -1  (0 shown second, wins)
#   r^{02} = +1  (0 shown first, wins)        r^{20} = +1  (2 shown first, wins)
#   r^{12} =  0  (tie / unparseable)          r^{21} = +1  (2 shown first, wins)
# Wins from the first slot: 4, from the second slot: 1  ->  w1 = 1/5 = 0.2, w2 = 4/5 = 0.8.
# B[m,n] = w1*[r^{mn}=+1] + w2*[r^{nm}=-1]:
#   B[0,1] = 0.2*1 + 0.8*[r^{10}=-1]=0.8  -> 1.0     B[1,0] = 0.2*0 + 0.8*0 -> 0.0
#   B[0,2] = 0.2*1 + 0.8*0                -> 0.2     B[2,0] = 0.2*1 + 0.8*0 -> 0.2
#   B[1,2] = 0.2*0 + 0.8*0                -> 0.0     B[2,1] = 0.2*1 + 0.8*0 -> 0.2
HAND_VERDICTS = {(0, 1): 1, (1, 0): -1, (0, 2): 1, (2, 0): 1, (1, 2): 0, (2, 1): 1}
HAND_BATTLES = np.array([[0.0, 1.0, 0.2], [0.0, 0.0, 0.0], [0.2, 0.2, 0.0]])


def test_hand_example_weights_and_matrix():
    w1, w2 = positional_weights(HAND_VERDICTS.values())
    assert (w1, w2) == pytest.approx((0.2, 0.8))
    np.testing.assert_allclose(battle_matrix(3, HAND_VERDICTS, w1, w2), HAND_BATTLES)


def test_hand_example_end_to_end():
    # 1 never wins -> weakest; 0 and 2 split their direct battles, but 0 beat 1 far more -> 0 strongest.
    elo = bradley_terry_elo(HAND_BATTLES)
    assert elo[0] > elo[2] > elo[1]
    choice = select_judge_pair(["j0", "j1", "j2"], elo, max_chars=100)
    assert isinstance(choice, JudgeChoice)
    assert (choice.chosen_index, choice.chosen_text, choice.rejected_index, choice.rejected_text) == (0, "j0", 1, "j1")
    assert choice.chosen_elo == pytest.approx(elo[0]) and choice.rejected_elo == pytest.approx(elo[1])


def test_positional_weights_edge_cases():
    assert positional_weights([]) == (0.5, 0.5)
    assert positional_weights([0, 0]) == (0.5, 0.5)
    assert positional_weights([1, 1, 0]) == (0.0, 1.0)  # every win from slot 1: those wins count 0
    assert positional_weights(iter([1, -1])) == (0.5, 0.5)
    with pytest.raises(ValueError, match="verdict"):
        positional_weights([2])


def test_battle_matrix_validation_and_missing_pairs():
    np.testing.assert_array_equal(battle_matrix(2, {}, 0.5, 0.5), np.zeros((2, 2)))
    for bad_key in [(0, 0), (0, 3), (-1, 1)]:
        with pytest.raises(ValueError, match="verdict key"):
            battle_matrix(3, {bad_key: 1}, 0.5, 0.5)
    with pytest.raises(ValueError, match="verdict"):
        battle_matrix(2, {(0, 1): 5}, 0.5, 0.5)


def test_ordered_pairs():
    assert ordered_pairs(3) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    assert len(ordered_pairs(11)) == 110
    assert ordered_pairs(1) == [] and ordered_pairs(0) == []
    with pytest.raises(ValueError):
        ordered_pairs(-1)


def test_mean_valid_score():
    assert mean_valid_score([4.0, None, 2.0]) == 3.0
    assert mean_valid_score([None, None]) is None
    assert mean_valid_score([]) is None


def test_highest_variance_response():
    # Population variances: [1,5] -> 4; [1,3,5] -> 8/3; [0,None,5] -> 6.25 but index 3 has only one valid score.
    assert highest_variance_response([[1, 5], [1, 3, 5], [2, 2], [0, None, None]]) == 0
    assert highest_variance_response([[1, 3, 5], [0, None, 5]]) == 1
    assert highest_variance_response([[2, 4], [4, 2], [1, 3]]) == 0  # ties -> lowest index
    assert highest_variance_response([[3, 3], [3, 3, 3]]) == 0  # zero variance still qualifies
    assert highest_variance_response([[None, 1], [2]]) is None
    assert highest_variance_response([]) is None
    # Float noise between equal variances must not break the tie rule: the second ordering of the same
    # scores gives 3.900000000000001 against 3.9000000000000004 for the first.
    assert highest_variance_response([[0.1, 0.7, 0.3, 4.9], [0.1, 0.3, 4.9, 0.7]]) == 0


def test_select_judge_pair_drops():
    texts = ["a", "bb", "ccc"]
    assert select_judge_pair(texts, np.array([1.0, 1.0, -2.0]), None) == "no_strict_order"
    assert select_judge_pair(texts, np.array([1.0, -1.0, -1.0 + 1e-8]), None) == "no_strict_order"
    assert select_judge_pair(texts, np.zeros(3), None) == "no_strict_order"
    assert select_judge_pair(texts, np.array([0.0, -1.0, 2.0]), max_chars=2) == "judgment_too_long"
    assert select_judge_pair(["a"], np.array([0.0]), None) == "too_few_judgments"
    with pytest.raises(ValueError, match="shape"):
        select_judge_pair(texts, np.zeros(2), None)


def test_select_judge_pair_picks():
    texts = ["a", "bb", "ccc"]
    choice = select_judge_pair(texts, np.array([0.0, -1.0, 2.0]), max_chars=3)  # cap is inclusive
    assert (choice.chosen_index, choice.rejected_index) == (2, 1)
    two = select_judge_pair(["x", "y"], np.array([-0.3, 0.3]), None)
    assert (two.chosen_index, two.rejected_index) == (1, 0)
    # A middle tie does not matter.
    choice = select_judge_pair(["a", "b", "c", "d"], np.array([1.0, 0.0, 0.0, -1.0]), None)
    assert (choice.chosen_index, choice.rejected_index) == (0, 3)
