"""ROUGE-L against hand-worked examples and, where installed, the `rouge-score` package."""

from __future__ import annotations

import pytest

from metareward.selfinstruct.rouge import lcs_length, max_rouge_l, rouge_l, rouge_tokens


def test_tokens_lowercase_and_split_on_non_alphanumerics() -> None:
    assert rouge_tokens("Write a HAIKU, about rain!  (2 lines)") == [
        "write",
        "a",
        "haiku",
        "about",
        "rain",
        "2",
        "lines",
    ]


def test_lcs_hand_worked() -> None:
    # a b c d e vs a c e f: common subsequence a c e, length 3.
    assert lcs_length(list("abcde"), list("acef")) == 3
    assert lcs_length([], ["a"]) == 0


def test_rouge_l_hand_worked() -> None:
    # "the cat sat on the mat" (6 tokens) vs "the cat lay on a mat" (6): LCS = the cat on mat = 4,
    # P = R = 4/6, F = 2/3.
    assert rouge_l("the cat sat on the mat", "the cat lay on a mat") == pytest.approx(2 / 3)
    # Unequal lengths: "explain gravity" (2) vs "explain gravity to a child" (5): LCS 2, P = 1, R = 0.4,
    # F = 2 * 0.4 / 1.4 = 4/7.
    assert rouge_l("Explain gravity.", "Explain gravity to a child") == pytest.approx(4 / 7)
    assert rouge_l("same words here", "Same, words; here") == 1.0
    assert rouge_l("nothing shared", "completely different") == 0.0
    assert rouge_l("", "anything") == 0.0


def test_max_rouge_l_over_references() -> None:
    references = [rouge_tokens("write a poem"), rouge_tokens("explain gravity to a child")]
    assert max_rouge_l("Explain gravity.", references) == pytest.approx(4 / 7)
    assert max_rouge_l("anything", []) == 0.0


SENTENCES = [
    "Write a short thank-you note to a neighbour who watered my plants.",
    "Write a thank you note to my neighbour for watering the plants while I was away.",
    "Explain why the sky is blue in two sentences.",
    "List 3 uses of a paperclip, and 2 of a rubber band!",
    "What is 7 times 8? Show your reasoning step by step.",
]


def test_matches_rouge_score_package() -> None:
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for candidate in SENTENCES:
        for reference in SENTENCES:
            expected = scorer.score(reference, candidate)["rougeL"].fmeasure
            assert rouge_l(candidate, reference) == pytest.approx(expected, abs=1e-12)
