"""Prompt templates for the judge and meta-judge roles, written for this project.

The structure follows the papers (Yuan et al. 2024, arXiv 2401.10020, Fig. 2: an additive 5-point rubric
ending in ``Score: <points>``; Wu et al. 2024, arXiv 2407.19594, Sec. 2.2: a meta-judge comparing two
judgments of one response and naming a winner), but the wording is our own and kept short because the
CPU demo model pays for every prompt token. Rendered strings are the *user* message; the chat template
is applied elsewhere.
"""

from __future__ import annotations

# Appended after a justification to read the score / winner from next-token probabilities.
SCORE_CUE = "Score:"
WINNER_CUE = "Winner: Judgment"
SCORE_CHOICES = ("0", "1", "2", "3", "4", "5")
WINNER_CHOICES = ("A", "B")

RUBRIC = (
    "Start at 0 and add one point for each statement that holds:\n"
    "1. It is on topic and gives some useful information, even if partial or partly off topic.\n"
    "2. It deals with a large part of the question, though not all of it.\n"
    "3. It answers the core of the question usefully, whether it reads like an assistant or like a web page.\n"
    "4. It is written as an AI assistant would answer, directly and completely: clear, well organised, "
    "helpful, even if it could be slightly better.\n"
    "5. It fits the question perfectly, with no filler, shows expert knowledge and real insight."
)

JUDGE_TEMPLATE = (
    "Rate how well the response answers the user's question, using this additive 5-point scale.\n"
    f"{RUBRIC}\n\n"
    "Question:\n{instruction}\n\n"
    "Response:\n{response}\n\n"
    "Explain your rating in 100 words or fewer. "
    'Then write a final line of the form "Score: <total points>".'
)

META_JUDGE_TEMPLATE = (
    "Two judges rated the same response with this additive 5-point scale.\n"
    f"{RUBRIC}\n\n"
    "Question:\n{instruction}\n\n"
    "Response:\n{response}\n\n"
    "Judgment A:\n{judgment_a}\n\n"
    "Judgment B:\n{judgment_b}\n\n"
    "Which judgment applies the scale more accurately and more consistently? Check the points each one gave "
    "or withheld against the response, and explain briefly. "
    'End with exactly one line: "Winner: Judgment A" or "Winner: Judgment B".'
)


def render_judge_prompt(instruction: str, response: str) -> str:
    """User message asking for a short justification and a final ``Score: <total points>`` line.

    Surrounding whitespace of both fields is stripped so the layout does not depend on how a
    generation ended.
    """
    return JUDGE_TEMPLATE.format(instruction=instruction.strip(), response=response.strip())


def render_meta_judge_prompt(instruction: str, response: str, judgment_a: str, judgment_b: str) -> str:
    """User message asking which of two judgments applies the rubric better, ending ``Winner: Judgment A|B``."""
    return META_JUDGE_TEMPLATE.format(
        instruction=instruction.strip(),
        response=response.strip(),
        judgment_a=judgment_a.strip(),
        judgment_b=judgment_b.strip(),
    )
