"""Thinking models: the reasoning block a model writes before its answer (`<think>...</think>`, as Qwen3 and the
DeepSeek-R1 distills do), told apart from the answer.

The loop judges, compares lengths of and shows the meta-judge the answer only; the reasoning is kept beside it in
the records and trained with it (a completion is trained as the model wrote it: `PairRecord.chosen_reasoning`).
"""

from __future__ import annotations

from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class ReasoningFormat:
    """How a model marks its reasoning: the tags, and whether the prompt itself opens the block (the R1 distills'
    templates end the generation prompt with `<think>`, so the model writes only the closing tag)."""

    open: str = THINK_OPEN
    close: str = THINK_CLOSE
    opened_by_prompt: bool = False


def split_reasoning(text: str, form: ReasoningFormat | None) -> tuple[str, str]:
    """(reasoning, answer) of a generated text, such that `reasoning + answer == text`.

    The reasoning runs up to the LAST closing tag (the answer never holds a tag) and the whitespace after it; the
    answer is the rest. A text with no closing tag is all reasoning when the block was opened (by the text or the
    prompt) and was cut before it closed, else all answer. `form` None: the model does not think; all answer.
    """
    if form is None:
        return "", text
    end = text.rfind(form.close)
    if end < 0:
        opened = form.opened_by_prompt or text.lstrip().startswith(form.open)
        return (text, "") if opened else ("", text)
    rest = text[end + len(form.close) :]
    answer = rest.lstrip()
    return text[: len(text) - len(answer)], answer
