"""The few-shot request that asks the model for one new task, written for this project.

The model sees `k` numbered example tasks drawn from the pool and is asked for task k + 1. The rendered prompt
ends with the answer already started (`Task <k+1>:`), so even a small model continues with a task and not with
a chat reply; `clean_candidate` later keeps only the first line.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

FEWSHOT_INTRO = (
    "Below are requests that people have sent to a helpful text-only AI assistant. "
    "They cover many topics and styles: writing, reasoning, coding, math, advice, explanations and ideas."
)
FEWSHOT_ASK = (
    "Write one new request of the same kind, on a different subject from all of those above. "
    "Make it specific and self-contained, one or two sentences long, and answerable in text. "
    "Reply with the request only."
)


def build_fewshot_message(examples: Sequence[str]) -> str:
    """User message listing the examples as `Task 1:` ... `Task k:` and asking for a new one."""
    if not examples:
        raise ValueError("a few-shot request needs at least one example task.")
    listed = "\n".join(f"Task {number}: {text.strip()}" for number, text in enumerate(examples, start=1))
    return f"{FEWSHOT_INTRO}\n\n{listed}\n\n{FEWSHOT_ASK}"


def answer_prefix(num_examples: int) -> str:
    """The start of the assistant's answer, placed after the chat template: `Task <k+1>: `."""
    return f"Task {num_examples + 1}: "


def choose_examples(pool: Sequence[str], k: int, seed: int) -> list[str]:
    """`k` distinct pool entries (all of them if the pool is smaller), drawn with `random.Random(seed)`."""
    if k < 1:
        raise ValueError(f"the number of few-shot examples must be at least 1, got {k}.")
    return random.Random(seed).sample(list(pool), min(k, len(pool)))
