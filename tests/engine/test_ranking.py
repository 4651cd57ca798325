"""Pairwise ranking of actor responses, by hand: comparison records -> positional weights -> scores -> the actor pair
chosen with length control; and reading the comparison's `Winner: A|B` line. The rankings' own numbers (Copeland,
Bradley-Terry) are checked in tests/core/test_pairwise.py."""

from __future__ import annotations

import numpy as np
import pytest

from metareward.core.actor_pairs import ScoredResponse
from metareward.core.comparison_prompt import COMPARISON_TEMPLATE, comparison_template_problems, render_comparison
from metareward.core.elo import bradley_terry_elo
from metareward.engine.judging import calibrated_verdicts, read_verdicts, winner_line
from metareward.engine.pairs import actor_pairs
from metareward.engine.ranking import PairwiseRanking, PointwiseRanking, RankingError, pairwise_scores
from metareward.storage.records import ComparisonRecord, PhaseResult, PromptRecord

# Prompt p1: four judged responses, strictly ordered 0 > 1 > 2 > 3 except that 2 and 3 each win only when shown
# first. The pointwise scores say the opposite order, so the pair shows which scores chose it. Lengths: 1 is shorter
# than 0, 3 longer than 2. Response 4 has no valid judgment (not compared). Prompt p2 has one judged response.
P1 = [
    ScoredResponse(0, "x" * 30, 1.0),
    ScoredResponse(1, "x" * 10, 2.0),
    ScoredResponse(2, "x" * 20, 4.0),
    ScoredResponse(3, "x" * 40, 5.0),
    ScoredResponse(4, "x" * 5, None),
]
CANDIDATES = {"p1": P1, "p2": [ScoredResponse(0, "only", 3.0)]}
PROMPTS = {"p1": PromptRecord("p1", "Question one?"), "p2": PromptRecord("p2", "Question two?")}


def verdict(first: int, second: int) -> int:
    if {first, second} == {2, 3}:
        return 1  # the first shown wins either way: position bias
    return 1 if first < second else -1


def records(tasks) -> list[ComparisonRecord]:
    return [
        ComparisonRecord(
            t.prompt_id, t.first.index, t.second.index, "...", verdict(t.first.index, t.second.index), "parsed"
        )
        for t in tasks
    ]


# 12 verdicts: the first slot wins 7 (six r^{ij} = +1 for i < j, and r^{32}), the second 5. w1 = 5/12, w2 = 7/12.
W1, W2 = 5 / 12, 7 / 12
# B[i, j] = w1 [r^{ij} = +1] + w2 [r^{ji} = -1]: every i < j wins both orders (w1 + w2 = 1), except 2 and 3 with w1 each.
BATTLES = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, W1], [0, 0, W1, 0]])


class Recorder:
    """A stand-in for the engine's comparer: answers every task with `verdict` and keeps what it was asked."""

    def __init__(self) -> None:
        self.tasks: list = []

    def __call__(self, tasks, template: str) -> PhaseResult:
        self.tasks = list(tasks)
        return PhaseResult(records(tasks), {}, parse_failures=1)


def test_copeland_from_comparison_records_picks_the_length_controlled_pair() -> None:
    compare = Recorder()
    ranked = PairwiseRanking("copeland", 0.0).rank(CANDIDATES, compare)
    # Only p1's four judged responses are compared, every ordered pair once; p2 (one response) is not.
    assert [(t.prompt_id, t.first.index, t.second.index) for t in compare.tasks] == [
        ("p1", i, j) for i in range(4) for j in range(4) if i != j
    ]
    # Copeland: 0 beats all (3); 1 beats 2, 3 (3 - 1 - 1 = 1); 2 and 3 lose to 0, 1 and tie (-2 each).
    assert [r.score for r in ranked.candidates["p1"]] == [3.0, 1.0, -2.0, -2.0, None]
    assert ranked.candidates["p2"] == [ScoredResponse(0, "only", None)]
    assert ranked.stats == {
        "compare/comparisons": 12.0,
        "compare/parse_failures": 1.0,
        "compare/w1": pytest.approx(W1),
        "compare/w2": pytest.approx(W2),
    }
    # rho 0.4 over [-2, 3]: top tier [1, 3] = {0, 1} -> the shorter, 1; bottom tier [-2, 0] = {2, 3} -> the longer, 3.
    selection = actor_pairs(PROMPTS, ranked.candidates, 0.4, "length_controlled")
    (pair,) = selection.items
    assert (pair.chosen_index, pair.rejected_index, pair.chosen_score, pair.rejected_score) == (1, 3, 1.0, -2.0)
    assert selection.drops == {"too_few_scored": 1}  # p2
    # By their pointwise means the same responses pair 2 (the shorter of the top tier {2, 3}) with 0.
    pointwise = actor_pairs(PROMPTS, PointwiseRanking().rank(CANDIDATES, compare).candidates, 0.4, "length_controlled")
    assert (pointwise.items[0].chosen_index, pointwise.items[0].rejected_index) == (2, 0)


def test_bradley_terry_weighs_the_wins_and_picks_another_pair() -> None:
    scores, weights = pairwise_scores({"p1": P1[:4]}, records(_tasks()), "bradley_terry", 0.001)
    assert weights == pytest.approx((W1, W2))
    strengths = bradley_terry_elo(BATTLES, l2=0.001)  # about (6.53, 1.50, -4.02, -4.02)
    assert [scores[("p1", i)] for i in range(4)] == pytest.approx(list(strengths))
    # rho 0.4 over [-4.02, 6.53]: the top tier starts at 2.31, so only 0; the bottom tier {2, 3} gives 3.
    ranked = PairwiseRanking("bradley_terry", 0.001).rank(CANDIDATES, Recorder())
    (pair,) = actor_pairs(PROMPTS, ranked.candidates, 0.4, "length_controlled").items
    assert (pair.chosen_index, pair.rejected_index) == (0, 3)
    assert pair.chosen_score == pytest.approx(strengths[0]) and pair.rejected_score == pytest.approx(strengths[3])


def _tasks():
    compare = Recorder()
    PairwiseRanking("copeland", 0.0).rank({"p1": P1[:4]}, compare)
    return compare.tasks


def test_pointwise_ranking_never_compares() -> None:
    def refuse(tasks, template):
        raise AssertionError("the pointwise ranking asked for comparisons")

    ranked = PointwiseRanking().rank(CANDIDATES, refuse)
    assert ranked.candidates == {key: list(value) for key, value in CANDIDATES.items()} and ranked.stats == {}


def test_a_bad_pairwise_ranking_names_each_field() -> None:
    with pytest.raises(RankingError) as error:
        PairwiseRanking("elo", -1.0, template="Which is better, {response_a} or {response_b}?")
    assert error.value.problems[0] == "method='elo' is not one of ['bradley_terry', 'copeland']"
    assert error.value.problems[1] == "l2=-1.0 must be a number >= 0"
    assert error.value.problems[2].startswith("template must show exactly the fields {instruction}, {response_a}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A is more complete.\nWinner: A", 1),
        ("B explains the steps.\n**Winner:** B.", -1),
        ("Winner: Response B", None),  # not the asked form: nothing to parse
        ('Both are fine. "Winner: A" or "Winner: B"', None),  # the template echoed back
        ("No line at all.", None),
    ],
)
def test_the_winner_line_is_parsed_as_a_verdict(text: str, expected: int | None) -> None:
    (reading,) = read_verdicts([text], "parse", {}, winner_line("Winner"))
    assert reading.value == (None if expected is None else float(expected))
    assert winner_line("Winner").parse(text) == {1: "A", -1: "B", None: None}[expected]


def test_a_probability_read_ends_with_the_likelier_line_and_is_calibrated() -> None:
    (read,) = read_verdicts(
        ["B is shorter.\nWinner: maybe"], "hybrid", {0: np.array([0.3, 0.7])}, winner_line("Winner")
    )
    assert read.value == -1.0 and read.source == "probability" and read.text == "B is shorter.\nWinner: B"
    assert read.log_odds == pytest.approx(np.log(0.3) - np.log(0.7))
    # A judge that favours A everywhere: against the median log-odds (1.0), 0.5 is a win for B and 2.0 for A.
    found = [ComparisonRecord("p", 0, 1, "x\nWinner: A", 1, "probability", lo) for lo in (0.5, 1.0, 2.0)]
    assert [r.verdict for r in calibrated_verdicts(found, winner_line("Winner"))] == [-1, 0, 1]
    assert calibrated_verdicts(found, winner_line("Winner"))[0].text == "x\nWinner: B"


def test_the_shipped_comparison_prompt_shows_both_responses_and_asks_for_the_line() -> None:
    assert comparison_template_problems(COMPARISON_TEMPLATE) == []
    text = render_comparison(COMPARISON_TEMPLATE, " Why? ", "first\n", "second", "Winner")
    assert "Question:\nWhy?\n\nResponse A:\nfirst\n\nResponse B:\nsecond\n\n" in text
    assert text.endswith('"Winner: A" or "Winner: B".')
    assert comparison_template_problems("{instruction} {response_a} {response_b} Winner: {winner_label}") == []
    assert comparison_template_problems("{instruction} {response_a} {response_b} {winner_label}: A") == [
        "template reads as a verdict itself; name both lines, as in 'Winner: A' or '... B'"
    ]
