"""Actor pair selection: METHOD.md worked example and edge cases."""

import itertools
from dataclasses import replace

import pytest
from helpers import compose

from metareward.config.build import build_settings
from metareward.core.actor_pairs import (
    ActorChoice,
    ScoredResponse,
    select_actor_pairs,
    select_best_vs_worst,
    select_length_controlled,
)
from metareward.schema.rules import field_problems


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


def test_issue_example_rho_above_half_is_refused_instead_of_inverting_the_pair():
    # (score, chars) (5,100) (2,10) (4,500) (1,50). At rho=0.8 the top tier [1.8, 5] holds (2,10) as its shortest
    # and the bottom tier [1, 4.2] holds (4,500) as its longest: chosen 2 < rejected 4. That rho is now refused.
    responses = make((5, 100), (2, 10), (4, 500), (1, 50))
    with pytest.raises(ValueError, match=r"rho must lie in \[0, 0.5\]"):
        select_length_controlled(responses, rho=0.8)
    # The widest valid rho keeps the order: top [3, 5] -> (5,100) (4,500): (5,100); bottom [1, 3] -> (2,10) (1,50):
    # (1,50).
    chosen, rejected = select_length_controlled(responses, rho=0.5)
    assert (chosen.score, len(chosen.text), rejected.score, len(rejected.text)) == (5, 100, 1, 50)


def test_tiers_meeting_at_rho_half_are_dropped_when_the_picks_tie():
    # rho=0.5: both tiers hold the midpoint 3. The shortest of the top tier (3,10) and the longest of the
    # bottom tier (3,500) score the same, which is no preference.
    responses = make((5, 100), (3, 10), (3, 500), (1, 50))
    assert select_length_controlled(responses, rho=0.5) == "overlapping_tiers"
    # One response on the midpoint, shortest and longest of its tiers at once: picked twice, also dropped.
    assert select_length_controlled(make((5, 60), (3, 50), (1, 40)), rho=0.5) == "overlapping_tiers"
    # A midpoint response that is not picked on both sides leaves a valid pair.
    assert picked(select_length_controlled(make((5, 10), (3, 50), (1, 40)), rho=0.5)) == (0, 1)
    selection = select_actor_pairs({"p": responses}, rho=0.5, strategy="length_controlled")
    assert selection.items == () and selection.drops == {"overlapping_tiers": 1}


@pytest.mark.parametrize("rho", [0.0, 0.1, 0.25, 0.4, 0.49, 0.5])
def test_chosen_always_scores_above_rejected(rho):
    # Every small score/length grid: a returned pair is always ordered by score.
    scores, lengths = (1, 2, 3, 4, 5), (10, 50, 500)
    for combo in itertools.product(itertools.product(scores, lengths), repeat=3):
        outcome = select_length_controlled(make(*combo, (5, 100), (1, 20)), rho=rho)
        if not isinstance(outcome, str):
            chosen, rejected = outcome
            assert chosen.score > rejected.score, (combo, rho)


def test_config_refuses_rho_above_half_for_rho_and_every_schedule_entry():
    engine = build_settings(compose()).engine
    problems = field_problems(replace(engine, rho=0.8, rho_schedule=(0.0, 0.6, 0.4)))
    rho_problems = [p for p in problems if "rho" in p]
    assert len(rho_problems) == 2
    assert rho_problems[0].startswith("pairs.rho=0.8 must be in [0, 0.5]: above 0.5 the top and bottom score tiers")
    assert rho_problems[1].startswith("pairs.rho_schedule entry 0.6 must be in [0, 0.5]")
    assert not [p for p in field_problems(replace(engine, rho=0.5, rho_schedule=(0.0, 0.5))) if "rho" in p]


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
