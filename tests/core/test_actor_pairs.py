"""Actor pair selection: METHOD.md worked example and edge cases."""

import pytest

from metareward.core.actor_pairs import (
    ActorChoice,
    ScoredResponse,
    select_actor_pairs,
    select_best_vs_worst,
    select_length_controlled,
)


def make(*score_chars):
    """Responses from (score, length) pairs; the text is `length` copies of the index digit."""
    return [ScoredResponse(i, str(i % 10) * chars, score) for i, (score, chars) in enumerate(score_chars)]


def picked(outcome):
    chosen, rejected = outcome
    return chosen.index, rejected.index


def test_method_worked_example():
    # METHOD.md step 4: S_max=5.0, S_min=2.0, rho=0.32.
    # Top tier [0.68*5.0 + 0.32*2.0, 5.0] = [4.04, 5.0]: {(5.0,1900), (4.2,1500)} -> shortest (4.2,1500).
    # Bottom tier [2.0, 0.68*2.0 + 0.32*5.0] = [2.0, 2.96]: {(2.5,2400), (2.0,1800)} -> longest (2.5,2400).
    responses = make((5.0, 1900), (4.2, 1500), (3.5, 1200), (2.5, 2400), (2.0, 1800))
    chosen, rejected = select_length_controlled(responses, rho=0.32)
    assert (chosen.score, len(chosen.text)) == (4.2, 1500)
    assert (rejected.score, len(rejected.text)) == (2.5, 2400)


def test_rho_zero_is_best_vs_worst_with_length_tie_breaks():
    # Two responses share S_max=5 and two share S_min=1: chosen = shorter top, rejected = longer bottom.
    responses = make((5, 300), (1, 100), (5, 200), (3, 50), (1, 400))
    assert picked(select_length_controlled(responses, rho=0.0)) == (2, 4)
    # Equal lengths inside a tier: lowest index.
    responses = make((5, 200), (1, 100), (5, 200), (1, 100))
    assert picked(select_length_controlled(responses, rho=0.0)) == (0, 1)


def test_tier_boundary_is_inclusive_despite_rounding():
    # 0.9*4.0 + 0.1*2.0 = 3.8 exactly, but 3.8000000000000003 in floats: 3.8 must stay in the top tier.
    assert 0.9 * 4.0 + 0.1 * 2.0 > 3.8
    responses = make((4.0, 900), (3.8, 100), (2.0, 500))
    assert picked(select_length_controlled(responses, rho=0.1)) == (1, 2)


def test_equal_scores_and_too_few_are_dropped():
    assert select_length_controlled(make((3, 10), (3, 20), (3, 5)), rho=0.3) == "all_scores_equal"
    assert select_length_controlled(make((3, 10)), rho=0.3) == "too_few_scored"
    assert select_length_controlled([], rho=0.3) == "too_few_scored"
    assert select_best_vs_worst(make((2, 10), (2, 20))) == "all_scores_equal"


def test_none_scores_are_excluded():
    responses = make((None, 1), (4, 500), (None, 9000), (2, 100))
    assert picked(select_length_controlled(responses, rho=0.0)) == (1, 3)
    assert picked(select_best_vs_worst(responses)) == (1, 3)
    assert select_length_controlled(make((None, 1), (4, 5), (None, 2)), rho=0.0) == "too_few_scored"


def test_overlapping_tiers():
    # rho=0.8: top tier [2.6, 5], bottom tier [1, 4.2]; response 1 (3.0, 50) is in both tiers and is
    # both the shortest of the top and the longest of the bottom.
    responses = make((5, 60), (3.0, 50), (1, 40))
    assert select_length_controlled(responses, rho=0.8) == "overlapping_tiers"
    # Overlap that still gives two different responses is kept.
    responses = make((5, 10), (3.0, 50), (1, 40))
    assert picked(select_length_controlled(responses, rho=0.8)) == (0, 1)


@pytest.mark.parametrize("rho", [-0.1, 1.5])
def test_rho_out_of_range(rho):
    with pytest.raises(ValueError, match="rho"):
        select_length_controlled(make((5, 1), (1, 1)), rho=rho)


def test_best_vs_worst_ignores_length_and_prefers_lowest_index():
    responses = make((4, 900), (1, 10), (4, 100), (1, 800))
    assert picked(select_best_vs_worst(responses)) == (0, 1)


def test_select_actor_pairs_counts_drops():
    per_prompt = {
        "p1": make((5.0, 1900), (4.2, 1500), (3.5, 1200), (2.5, 2400), (2.0, 1800)),
        "p2": make((3, 10), (3, 20)),
        "p3": make((None, 10), (3, 20)),
        "p4": make((1, 10), (2, 20)),
    }
    selection = select_actor_pairs(per_prompt, rho=0.32, strategy="length_controlled")
    assert selection.drops == {"all_scores_equal": 1, "too_few_scored": 1}
    assert [c.prompt_id for c in selection.items] == ["p1", "p4"]
    first = selection.items[0]
    assert isinstance(first, ActorChoice)
    assert (first.chosen_index, first.chosen_score, first.rejected_index, first.rejected_score) == (1, 4.2, 3, 2.5)
    assert first.chosen_text == per_prompt["p1"][1].text

    baseline = select_actor_pairs(per_prompt, rho=0.32, strategy="best_vs_worst")
    assert [(c.chosen_index, c.rejected_index) for c in baseline.items] == [(0, 4), (1, 0)]


def test_unknown_strategy():
    with pytest.raises(ValueError, match="best_vs_worst, length_controlled"):
        select_actor_pairs({}, rho=0.0, strategy="random")
