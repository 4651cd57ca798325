"""Reading scores and verdicts in each mode, with the probabilities given explicitly (the default judge prompt's
lines; other prompts: tests/core/test_judge_prompt.py)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from metareward.core.prompts import ADDITIVE_FIVE_POINT
from metareward.engine import judging
from metareward.engine.judging import choice_contexts, score_line, winner_line

SCORE = score_line(ADDITIVE_FIVE_POINT)
WINNER = winner_line(ADDITIVE_FIVE_POINT.winner_label, ADDITIVE_FIVE_POINT.winner_cue)  # the meta-judge's
SCORE_TAIL, WINNER_TAIL = SCORE.tail, WINNER.tail
score_contexts = partial(choice_contexts, line=SCORE)
winner_contexts = partial(choice_contexts, line=WINNER)
read_scores = partial(judging.read_scores, prompt=ADDITIVE_FIVE_POINT)
read_verdicts = partial(judging.read_verdicts, line=WINNER)

TEXTS = ["Helpful and correct.\nScore: 4", "Rambling, no score here", "**Score:** five"]
PROMPTS = ["<p0>", "<p1>", "<p2>"]


def test_parse_mode_never_reads_probabilities_and_counts_none() -> None:
    assert score_contexts(PROMPTS, TEXTS, "parse") == {}
    readings = read_scores(TEXTS, "parse", {})
    assert [r.value for r in readings] == [4.0, None, None]
    assert [r.source for r in readings] == ["parsed", "none", "none"]


def test_hybrid_mode_reads_probabilities_only_where_parsing_fails() -> None:
    contexts = score_contexts(PROMPTS, TEXTS, "hybrid")
    assert sorted(contexts) == [1, 2]
    assert contexts[1] == "<p1>Rambling, no score here\nScore: "
    assert contexts[2] == "<p2>Score: "  # the garbled score line is cut before the cue
    p = np.array([0, 0, 0.5, 0.5, 0, 0.0])
    readings = read_scores(TEXTS, "hybrid", {1: p, 2: np.eye(6)[5]})
    assert readings[0].value == 4.0 and readings[0].source == "parsed"
    assert readings[1].value == 2.5 and readings[1].source == "probability"
    assert readings[1].text == "Rambling, no score here\nScore: 2"  # the most likely score is written out
    assert readings[2].value == 5.0


def test_probability_mode_replaces_even_a_written_score() -> None:
    contexts = score_contexts(PROMPTS, TEXTS, "probability")
    assert sorted(contexts) == [0, 1, 2] and contexts[0] == "<p0>Helpful and correct.\nScore: "
    readings = read_scores(TEXTS, "probability", {i: np.eye(6)[1] for i in range(3)})
    assert [r.value for r in readings] == [1.0, 1.0, 1.0]


def test_verdicts_from_text_and_from_probabilities() -> None:
    texts = ["A is more accurate.\nWinner: Judgment A", "Hmm", "B wins. Winner: Judgment B", "tie"]
    contexts = winner_contexts(["", "", "", ""], texts, "hybrid")
    assert sorted(contexts) == [1, 3]
    readings = read_verdicts(texts, "hybrid", {1: np.array([0.2, 0.8]), 3: np.array([0.5, 0.5])})
    assert [r.value for r in readings] == [1.0, -1.0, -1.0, 0.0]
    assert readings[1].text == "Hmm\nWinner: Judgment B"
    assert [r.value for r in read_verdicts(texts, "parse", {})] == [1.0, None, -1.0, None]


def test_position_calibration_removes_a_constant_preference_for_slot_a() -> None:
    from metareward.storage.records import MetaJudgmentRecord

    # The meta-judge favours A everywhere, but less so in verdicts 1 and 3: after calibration those go to B.
    p = {
        0: np.array([0.85, 0.15]),
        1: np.array([0.75, 0.25]),
        2: np.array([0.8, 0.2]),
        3: np.array([0.7, 0.3]),
        4: np.array([0.9, 0.1]),
    }
    readings = read_verdicts(["x"] * 5, "probability", p)
    assert [r.value for r in readings] == [1.0] * 5
    records = [
        MetaJudgmentRecord("p", 0, i, 9, r.text, int(r.value), "probability", r.log_odds)
        for i, r in enumerate(readings)
    ]
    records.append(MetaJudgmentRecord("p", 0, 7, 8, "Winner: Judgment B", -1, "parsed"))  # parsed verdicts stay
    calibrated = judging.calibrated_verdicts(records, WINNER)
    assert [r.verdict for r in calibrated] == [1, -1, 0, -1, 1, -1]  # the median verdict sits at the centre: a tie
    assert calibrated[1].text == "x\nWinner: Judgment B" and calibrated[0].text == "x\nWinner: Judgment A"


def test_reads_taken_while_generating_are_used_only_where_the_context_is_text_plus_cue() -> None:
    from metareward.engine.judging import reads_from_generation
    from metareward.generation.sampler import Generation

    texts = ["Rambling, no score here", "**Score:** five", "Ends with new lines\n\n", " ", "No read was taken"]
    logprobs = [tuple(np.log([0.1, 0.1, 0.2, 0.2, 0.2, 0.1]))] * 4 + [None]
    generations = [Generation(i, t, 3, True, choice_logprobs=lp) for i, (t, lp) in enumerate(zip(texts, logprobs))]
    contexts = score_contexts(["<p>"] * 5, texts, "hybrid")
    found = reads_from_generation(contexts, generations, SCORE_TAIL)
    # A garbled score line (cut before the cue) or a blank text change the context: those need their own pass.
    assert sorted(found) == [0, 2]
    assert found[0] == pytest.approx([0.1, 0.1, 0.2, 0.2, 0.2, 0.1] / np.float64(0.9))


EXPLANATION_CASES = [
    # A cue word inside the justification is not a tail (issue 12: these used to cut the text there).
    ("The relevance score: yes, it answers the question.\nIt is useful.", None),
    ("Underscore: the variable name in the answer is fine.\nIt runs.", None),
    (
        "Relevant (+1). The score: not yet decided, see below.\nScore: 4",
        "Relevant (+1). The score: not yet decided, see below.",
    ),
    ("Relevance score: yes.\nUnderscore: fine.\n**Score:** four", "Relevance score: yes.\nUnderscore: fine."),
    # A cue followed by more explanation is not final.
    ("Score: 4\nBut on reflection the answer misses the second part of the question.", None),
    # Real final lines, garbled or emphasised, are removed.
    ("Helpful and correct.\nScore: four", "Helpful and correct."),
    ("Helpful and correct.\n\n**Score:** 4/10", "Helpful and correct."),
    ("Helpful and correct. Score: 4 points", "Helpful and correct."),
    ("Helpful and correct.\n- **Final Score**: 4\n", "Helpful and correct."),
    ("Helpful and correct.\nScore:\n3\n\n", "Helpful and correct."),
    ("Helpful.\nScore: 3\nScore: 4", "Helpful."),
    ("**Score:** five", ""),
]


@pytest.mark.parametrize(("text", "expected"), EXPLANATION_CASES)
def test_only_a_final_score_line_is_a_tail(text: str, expected: str | None) -> None:
    from metareward.engine.judging import explanation_part

    assert explanation_part(text, SCORE_TAIL) == (text.rstrip() if expected is None else expected)


def test_only_a_final_winner_line_is_a_tail() -> None:
    from metareward.engine.judging import explanation_part

    kept = "The winner: is unclear at first. Judgment A counts three points."
    assert explanation_part(kept, WINNER_TAIL) == kept
    assert explanation_part(f"{kept}\nWinner: [Judgement A], clearly", WINNER_TAIL) == kept
    assert explanation_part(f"{kept} **Winner:** tie", WINNER_TAIL) == kept


def test_a_justification_with_a_cue_word_reaches_the_context_and_the_stored_text_whole() -> None:
    text = "The relevance score: yes. Underscore: it is named well.\nScore: four"
    explanation = "The relevance score: yes. Underscore: it is named well."
    assert score_contexts(["<p>"], [text], "hybrid") == {0: f"<p>{explanation}\nScore: "}
    reading = read_scores([text], "hybrid", {0: np.eye(6)[3]})[0]
    assert reading.text == f"{explanation}\nScore: 3"
    verdict_text = "Judgment A says the winner: is the answer's author. Judgment B is fairer.\nWinner: Judgment"
    reading = read_verdicts([verdict_text], "hybrid", {0: np.array([0.1, 0.9])})[0]
    assert reading.text == verdict_text.rsplit("\n", 1)[0] + "\nWinner: Judgment B"


def test_generation_reads_are_used_for_texts_whose_cue_word_is_not_a_tail() -> None:
    from metareward.engine.judging import reads_from_generation
    from metareward.generation.sampler import Generation

    texts = ["Relevance score: yes, and it is complete.", "Complete.\nScore: four"]
    generations = [
        Generation(i, t, 3, True, choice_logprobs=tuple(np.log(np.full(6, 1 / 6)))) for i, t in enumerate(texts)
    ]
    found = reads_from_generation(score_contexts(["<p>"] * 2, texts, "hybrid"), generations, SCORE_TAIL)
    assert sorted(found) == [0]  # the first context is its text plus the cue; the second cut a garbled line


def test_the_meta_judges_and_a_comparisons_verdicts_are_read_by_one_reader_on_their_own_lines() -> None:
    comparison = winner_line("Winner")  # a pairwise comparison's `Winner: A|B`
    texts = ["A is right.\nWinner: Judgment A", "B is right.\nWinner: B", "Unsure.\nWinner: maybe"]
    p = {2: np.array([0.2, 0.8])}
    meta = judging.read_verdicts(texts, "hybrid", p, WINNER)
    compared = judging.read_verdicts(texts, "hybrid", p, comparison)
    assert [r.value for r in meta] == [r.value for r in compared] == [1.0, -1.0, -1.0]
    assert meta[2].log_odds == compared[2].log_odds == pytest.approx(np.log(0.2) - np.log(0.8))
    assert meta[2].text == "Unsure.\nWinner: Judgment B" and compared[2].text == "Unsure.\nWinner: B"
