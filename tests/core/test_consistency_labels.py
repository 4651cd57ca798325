"""CREAM's consistency labels (core.pair_labels.ConsistencyLabels), worked by hand: each pair's label is how well two
judges' rankings of its prompt's responses agree, (tau_b + 1) / 2, per prompt or averaged over the prompts."""

from __future__ import annotations

import pytest
from scipy.stats import kendalltau

from metareward.core.pair_labels import ConsistencyLabels, LabelEvidence, prompt_consistencies
from metareward.storage.records import PairRecord

# Current and previous judges' mean scores of three prompts' responses, keyed (prompt id, response index).
CURRENT = {("p", 0): 3.0, ("p", 1): 2.0, ("p", 2): 1.0, ("q", 0): 4.0, ("q", 1): 1.0, ("r", 0): 2.0, ("r", 1): 5.0}
PREVIOUS = {("p", 0): 3.0, ("p", 1): 1.0, ("p", 2): 2.0, ("q", 0): 3.0, ("q", 1): 2.0, ("r", 0): 2.5, ("r", 1): 2.5}
# p: pairs (0,1) and (0,2) agree, (1,2) disagrees: tau = (2 - 1) / 3, C = 2/3.  q: same order, C = 1.
# r: the previous judge ties both responses, so tau is undefined and r has no C of its own.
MEAN = (2 / 3 + 1) / 2


def pair(prompt_id: str) -> PairRecord:
    return PairRecord("actor", prompt_id, "x", "a", "b", 2.0, 1.0, chosen_index=0, rejected_index=1)


PAIRS = [pair("p"), pair("q"), pair("r")]
EVIDENCE = LabelEvidence({}, CURRENT, PREVIOUS)


def test_per_prompt_consistency_is_the_hand_worked_tau() -> None:
    found = prompt_consistencies(CURRENT, PREVIOUS)
    assert found["p"] == pytest.approx(2 / 3) and found["q"] == pytest.approx(1.0) and found["r"] is None
    # scipy's tau-b agrees on p.
    tau = kendalltau([3.0, 1.0, 2.0], [3.0, 2.0, 1.0]).statistic
    assert found["p"] == pytest.approx((tau + 1) / 2)


def test_dataset_granularity_gives_every_pair_the_mean() -> None:
    assert ConsistencyLabels()(PAIRS, EVIDENCE) == pytest.approx([MEAN, MEAN, MEAN])


def test_prompt_granularity_gives_each_pair_its_own_and_the_mean_where_undefined() -> None:
    assert ConsistencyLabels("prompt")(PAIRS, EVIDENCE) == pytest.approx([2 / 3, 1.0, MEAN])


def test_reversed_rankings_reverse_the_pair() -> None:
    current = {("p", 0): 1.0, ("p", 1): 2.0, ("p", 2): 3.0}
    previous = {("p", 0): 3.0, ("p", 1): 2.0, ("p", 2): 1.0}
    assert ConsistencyLabels("prompt")([pair("p")], LabelEvidence({}, current, previous)) == [0.0]


def test_without_a_previous_judge_or_any_defined_agreement_pairs_stay_hard() -> None:
    assert ConsistencyLabels()(PAIRS, LabelEvidence({}, CURRENT, None)) == [None, None, None]
    tied = {key: 1.0 for key in PREVIOUS}
    assert ConsistencyLabels("prompt")(PAIRS, LabelEvidence({}, CURRENT, tied)) == [None, None, None]


def test_only_responses_both_judges_scored_count() -> None:
    # Response 2 of p has no previous score: p is ranked on responses 0 and 1 alone (3 > 2 against 3 > 1: C = 1).
    previous = {("p", 0): 3.0, ("p", 1): 1.0}
    assert prompt_consistencies(CURRENT, previous) == {"p": pytest.approx(1.0)}


def test_an_unknown_granularity_is_refused() -> None:
    with pytest.raises(ValueError, match="granularity='batch' is not one of"):
        ConsistencyLabels("batch")
