"""Parsers against realistic and malformed judge / meta-judge outputs (the default prompt's lines and scale)."""

import pytest

from metareward.core.parsing import parse_score
from metareward.core.prompts import ADDITIVE_FIVE_POINT

parse_winner = ADDITIVE_FIVE_POINT.parse_winner

SCORE_CASES = [
    ("The response is relevant and complete.\nScore: 4", 4.0),
    ("Relevant (+1), substantial (+1), useful (+1).\n\nScore: 3", 3.0),
    ("**Score:** 4", 4.0),
    ("**Score**: 2", 2.0),
    ("Score: **5**", 5.0),
    ("Score: 4/5", 4.0),
    ("Score: 4.5", 4.5),
    ("score: 3", 3.0),
    ("Score: 4.", 4.0),
    ("Score:4", 4.0),
    ("Total score: 2 points", 2.0),
    ("I first thought Score: 2, but on reflection it deserves more.\nScore: 4", 4.0),
    ("Score: 3\nScore: 5", 5.0),
    ("Score: 0", 0.0),
    ("Score: 5.0", 5.0),
    ("Score:\n3", 3.0),
    ("Score: 6", None),
    ("Score: -1", None),
    ("Score: 45", None),
    ("Score: 4\nScore: 7", None),  # last line is the answer, and it is out of range
    ("Score: five", None),
    ("", None),
    ("The response deserves four points.", None),
    ("Score: <total points>", None),
    ("Score: 8/10", None),  # a different scale cannot be trusted
    ("Score: 3-4", None),
    ("Score: 3 or 4", None),
    ("Underscore: 4", None),
    ("Score: 2\nScore: five", 2.0),  # the last *numeric* Score line counts
]


@pytest.mark.parametrize(("text", "expected"), SCORE_CASES)
def test_parse_score(text, expected):
    assert ADDITIVE_FIVE_POINT.parse_score(text) == expected


def test_parse_score_custom_range():
    assert parse_score("Score: 8", low=0, high=10, label="Score") == 8.0
    assert parse_score("Score: 8/10", low=0, high=10, label="Score") == 8.0
    assert parse_score("Score: 0.5", low=1, high=10, label="Score") is None


def test_the_label_names_the_line():
    assert parse_score("Rating: 3\n**Final rating:** 4", low=0, high=5, label="Rating") == 4.0
    assert parse_score("Score: 3", low=0, high=5, label="Rating") is None
    assert parse_score("Overall grade: 7/10", low=0, high=10, label="Overall grade") == 7.0


WINNER_CASES = [
    ("Judgment A counts the points correctly.\nWinner: Judgment A", "A"),
    ("Winner: Judgment B", "B"),
    ("**Winner:** Judgment B", "B"),
    ("**Winner: Judgment A**", "A"),
    ("winner: judgment a", "A"),
    ("Winner: Judgement B.", "B"),
    ("Winner: A", "A"),
    ("Winner: b", "B"),
    ("Winner: Judgment A\nOn second thought...\nWinner: Judgment B", "B"),
    ("Winner: Judgment A (it gives a fairer score)", "A"),
    ("Winner: Judgment A or Judgment B", None),  # the instruction echoed back
    ("Winner: A/B", None),
    ("Winner: tie", None),
    ("Winner: Judgment C", None),
    ("Both judgments are equally good.", None),
    ("", None),
    ("Winner: Judgment", None),
    ("Judgment A is better.", None),
    ("Winner: Both", None),
    ("Winner: Judgment B\nWinner: neither", "B"),
    # Issue 12: the first label after the cue decides, whatever follows it on the line.
    ("Winner: Judgment A because Judgment B misses point 3", "A"),
    ("Winner: [Judgement A]", "A"),
    ("Winner: Judgment A, and a clear one", "A"),
    ("Winner: Judgment B and a clear one", "B"),
    ("**Winner:** **Judgment B**, since A double-counts relevance", "B"),
    ('Winner: "Judgment B"', "B"),
    ("Winner: (B)", "B"),
    ("Winner: Judgment A (Judgment B misses the second point)", "A"),
    ("Winner: Judgment A. Judgment B or any other reading would be too lenient.", "A"),
    ("Winner:\nJudgment B", "B"),
    ("Winner: Judgment A's reasoning", "A"),
    # The template echoed back, or both labels joined: undecided.
    ("Winner: [Judgment A or Judgment B]", None),
    ("Winner: Judgment A or B", None),
    ("Winner: A or B", None),
    ("Winner: A | B", None),
    ("Winner: Judgment A vs. Judgment B", None),
    ("Winner: Judgment A and Judgment B are equally good", None),
    ("Winner: Judgment B\nWinner: Judgment A or Judgment B", None),  # the last cue with a label is the echo
    ('End with exactly one line: "Winner: Judgment A" or "Winner: Judgment B".', None),
    ("Winner: Judgment A. On reflection, Winner: Judgment B", "B"),  # the last cue counts, even on one line
    # No label right after the cue.
    ("Winner: a tie", None),
    ("Winner: neither Judgment A nor Judgment B", None),
    ("Winner: Alpha", None),
    ("Winner: the second one, Judgment B", None),
    ("The winner is Judgment A", None),
    ("Judgment A is the winner: it is more careful.", None),
]


@pytest.mark.parametrize(("text", "expected"), WINNER_CASES)
def test_parse_winner(text, expected):
    assert parse_winner(text) == expected


def test_the_winner_label_names_the_line():
    from metareward.core.parsing import parse_winner as parse

    assert parse("Verdict: Judgment B", label="Verdict") == "B"
    assert parse("Winner: Judgment A", label="Verdict") is None
    assert parse('"Verdict: A" or "Verdict: B"', label="Verdict") is None
