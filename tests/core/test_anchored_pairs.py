"""Anchored rejections (Temporal Self-Rewarding): the chosen side from the current model's answers, the rejected
side from the anchor's, each picked by the strategy within its own set. Worked by hand below."""

from __future__ import annotations

import pytest

from metareward.core.actor_pairs import (
    ScoredResponse,
    chosen_pick,
    rejected_pick,
    select_anchored,
    select_anchored_pairs,
)

# M_t's answers 0-2 and M0's anchors 3-5, as the engine numbers them (anchors after the actor's K = 3).
OWN = [ScoredResponse(0, "aaaa", 4.0), ScoredResponse(1, "bb", 3.8), ScoredResponse(2, "cccccc", 2.0)]
ANCHORS = [ScoredResponse(3, "dddddddd", 1.0), ScoredResponse(4, "ee", 1.5), ScoredResponse(5, "fff", 3.0)]


def test_length_control_picks_each_side_within_its_own_tiers() -> None:
    # Own: S_max 4, S_min 2, rho 0.4: top floor 0.6 * 4 + 0.4 * 2 = 3.2 -> {0, 1}; the shorter is 1 ("bb", 3.8).
    assert chosen_pick(OWN, 0.4, "length_controlled") == OWN[1]
    # Anchors: S_max 3, S_min 1: bottom ceiling 0.6 * 1 + 0.4 * 3 = 1.8 -> {3, 4}; the longer is 3 (8 chars, 1.0).
    assert rejected_pick(ANCHORS, 0.4, "length_controlled") == ANCHORS[0]
    assert select_anchored(OWN, ANCHORS, 0.4, "length_controlled") == (OWN[1], ANCHORS[0])


def test_rho_zero_and_best_vs_worst_take_the_extremes() -> None:
    assert select_anchored(OWN, ANCHORS, 0.0, "length_controlled") == (OWN[0], ANCHORS[0])
    assert select_anchored(OWN, ANCHORS, 0.4, "best_vs_worst") == (OWN[0], ANCHORS[0])


def test_equal_scores_put_every_answer_in_the_tier() -> None:
    # The current model's answers all tie: a plain pair would be dropped (all_scores_equal), an anchored one is not.
    tied = [ScoredResponse(0, "long answer", 3.0), ScoredResponse(1, "short", 3.0)]
    assert chosen_pick(tied, 0.4, "length_controlled") == tied[1]
    assert select_anchored(tied, ANCHORS, 0.4, "length_controlled") == (tied[1], ANCHORS[0])


def test_an_anchor_scored_as_high_as_the_chosen_answer_drops_the_pair() -> None:
    high = [ScoredResponse(3, "x", 3.8), ScoredResponse(4, "yy", 4.5)]
    # Bottom tier of {3.8, 4.5} at rho 0.4: <= 0.6 * 3.8 + 0.4 * 4.5 = 4.08 -> {3}: 3.8 is not below 3.8.
    assert select_anchored(OWN, high, 0.4, "length_controlled") == "anchor_not_below"


def test_a_side_without_scored_answers_is_too_few_scored() -> None:
    unscored = [ScoredResponse(3, "x", None)]
    assert select_anchored(OWN, unscored, 0.4, "length_controlled") == "too_few_scored"
    assert select_anchored([], ANCHORS, 0.4, "length_controlled") == "too_few_scored"


def test_pairs_over_prompts_count_their_drops() -> None:
    selection = select_anchored_pairs({"p": OWN, "q": OWN, "r": OWN}, {"p": ANCHORS, "q": []}, 0.4, "length_controlled")
    assert [(c.prompt_id, c.chosen_index, c.rejected_index) for c in selection.items] == [("p", 1, 3)]
    assert selection.items[0].chosen_score == 3.8 and selection.items[0].rejected_score == 1.0
    assert dict(selection.drops) == {"too_few_scored": 2}


def test_a_bad_rho_or_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="rho must lie in"):
        select_anchored(OWN, ANCHORS, 0.6, "length_controlled")
    with pytest.raises(ValueError, match="Unknown actor pair strategy"):
        select_anchored_pairs({"p": OWN}, {"p": ANCHORS}, 0.4, "best_of_all")
