"""The default prompt's templates: required content, cues and size (new prompts: tests/core/test_judge_prompt.py)."""

from metareward.core.prompts import (
    ADDITIVE_FIVE_POINT,
    SCORE_CHOICES,
    SCORE_CUE,
    WINNER_CHOICES,
    WINNER_CUE,
    render_judge_prompt,
    render_meta_judge_prompt,
)

parse_score, parse_winner = ADDITIVE_FIVE_POINT.parse_score, ADDITIVE_FIVE_POINT.parse_winner


def test_judge_prompt_contains_fields_and_format():
    prompt = render_judge_prompt("  How do I boil an egg? {x}\n", "Put it in boiling water.\n")
    assert "How do I boil an egg? {x}\n" in prompt  # braces in user text survive formatting
    assert "Put it in boiling water." in prompt
    assert prompt.rstrip().endswith('"Score: <total points>".')
    assert "100 words" in prompt
    assert all(f"{k}. " in prompt for k in range(1, 6))


def test_judge_prompt_is_compact():
    assert len(render_judge_prompt("", "")) < 1100


def test_meta_judge_prompt_contains_both_judgments():
    prompt = render_meta_judge_prompt("Q?", "R.", "first judgment Score: 3", "second judgment Score: 5")
    assert prompt.index("Judgment A:\nfirst judgment") < prompt.index("Judgment B:\nsecond judgment")
    assert '"Winner: Judgment A" or "Winner: Judgment B"' in prompt
    assert all(f"{k}. " in prompt for k in range(1, 6))
    assert len(render_meta_judge_prompt("", "", "", "")) < 1300
    # The template itself must not parse as a decision.
    assert parse_winner(render_meta_judge_prompt("", "", "", "")) is None
    assert parse_score(render_judge_prompt("", "")) is None


def test_cues_complete_to_parseable_answers():
    assert [parse_score(f"{SCORE_CUE} {c}") for c in SCORE_CHOICES] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert [parse_winner(f"{WINNER_CUE} {c}") for c in WINNER_CHOICES] == ["A", "B"]


def _criterion(prompt: str, number: int) -> str:
    return next(line for line in prompt.splitlines() if line.startswith(f"{number}. "))


def test_rubric_carries_the_papers_qualifiers():
    """Yuan et al. 2024, Fig. 2: point 1 holds despite some irrelevant content, point 3 whatever the style (assistant
    or web page), point 4 for an answer written as an assistant would give it even with slight room to improve."""
    for prompt in (render_judge_prompt("", ""), render_meta_judge_prompt("", "", "", "")):
        assert "off topic" in _criterion(prompt, 1)
        assert "assistant" in _criterion(prompt, 3) and "web page" in _criterion(prompt, 3)
        assert "AI assistant would answer" in _criterion(prompt, 4) and "slightly better" in _criterion(prompt, 4)


def test_meta_judge_weighs_consistency():
    assert "consistently" in render_meta_judge_prompt("", "", "", "")


def test_templates_fit_the_demo_token_budget(embedded_checkpoint):
    """The CPU demo pays for every prompt token: the empty templates stay within a fixed SmolLM2 token budget."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(embedded_checkpoint))
    count = lambda text: len(tokenizer(text, add_special_tokens=False).input_ids)
    assert count(render_judge_prompt("", "")) <= 200
    assert count(render_meta_judge_prompt("", "", "", "")) <= 230
