"""Cleaning, the individual filters and the counted drops, on hand-made candidates."""

from __future__ import annotations

import pytest

from metareward.selfinstruct.fewshot import answer_prefix, build_fewshot_message, choose_examples
from metareward.selfinstruct.filters import (
    DROP_REASONS,
    FilterSettings,
    clean_candidate,
    drop_reason,
    filter_candidates,
)

SETTINGS = FilterSettings(max_rouge_l=0.7, min_words=3, max_words=12, banned_keywords=("image", "file"))


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Describe a sunset over the sea.\nTask 10: another", "Describe a sunset over the sea."),
        ("  Task 7: Name two rivers in Africa.", "Name two rivers in Africa."),
        ("3. Give tips for saving money.", "Give tips for saving money."),
        ('\n\n"Suggest a name for a cat."', "Suggest a name for a cat."),
        ("- Plan a picnic menu.", "Plan a picnic menu."),
        ("   \n  ", ""),
    ],
)
def test_clean_candidate(raw: str, clean: str) -> None:
    assert clean_candidate(raw) == clean


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("Hi there", "too_short"),
        ("Write " + "a very long request that keeps going " * 3, "too_long"),
        ("Describe this image in detail please.", "keyword"),
        ("Summarise the attached file for me.", "keyword"),
        ("Describe the imagery of this poem.", None),  # whole words only: "imagery" is not "image"
        ("Write a poem\x07 about bells.", "unprintable"),
        ("(Write a poem about bells.)", "bad_start"),
        ("Write a poem about bells.", None),
    ],
)
def test_drop_reason(text: str, reason: str | None) -> None:
    assert drop_reason(text, SETTINGS) == reason


def test_filter_candidates_counts_every_reason() -> None:
    existing = ["Write a haiku about the first frost of autumn.", "Explain how a rainbow forms."]
    candidates = [
        "Task 3: Give three tips for learning a new language.",  # kept
        "Explain how a RAINBOW forms!",  # duplicate of an existing prompt (case, punctuation)
        "Write a haiku about the first frost of winter.",  # similar: ROUGE-L 8/9 with the first prompt
        "Give three tips for learning a new language.",  # duplicate of the candidate kept just before
        "Draw an image of a cat.",  # keyword
        "Hello",  # too_short
        "",  # empty
        "Plan a three-day trip to Lisbon on a budget.",  # kept
    ]
    result = filter_candidates(candidates, existing, SETTINGS)
    assert result.kept == [
        "Give three tips for learning a new language.",
        "Plan a three-day trip to Lisbon on a budget.",
    ]
    assert set(result.drops) == set(DROP_REASONS)
    assert result.drops == {
        "empty": 1,
        "too_short": 1,
        "too_long": 0,
        "unprintable": 0,
        "keyword": 1,
        "bad_start": 0,
        "duplicate": 2,
        "similar": 1,
    }
    assert len(result.kept) + sum(result.drops.values()) == len(candidates)


def test_threshold_is_inclusive() -> None:
    # ROUGE-L of these two is exactly 2/3 (see test_rouge): dropped at 2/3, kept above it.
    existing, candidate = ["the cat lay on a mat"], ["the cat sat on the mat"]
    assert filter_candidates(candidate, existing, FilterSettings(max_rouge_l=2 / 3)).drops["similar"] == 1
    assert filter_candidates(candidate, existing, FilterSettings(max_rouge_l=0.7)).kept == candidate


def test_settings_problems() -> None:
    assert FilterSettings().problems() == []
    assert len(FilterSettings(max_rouge_l=0.0, min_words=5, max_words=2).problems()) == 2


def test_fewshot_message_and_examples() -> None:
    message = build_fewshot_message(["Write a poem.", "Explain tides."])
    assert "Task 1: Write a poem.\nTask 2: Explain tides." in message
    assert answer_prefix(2) == "Task 3: "
    pool = [f"prompt {i}" for i in range(20)]
    chosen = choose_examples(pool, 6, seed=5)
    assert chosen == choose_examples(pool, 6, seed=5) and len(set(chosen)) == 6
    assert choose_examples(pool[:3], 6, seed=5) != [] and len(choose_examples(pool[:3], 6, seed=5)) == 3
    with pytest.raises(ValueError):
        build_fewshot_message([])
