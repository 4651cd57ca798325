"""Read the score out of a judgment and the winner out of a meta-judgment.

Both parsers look at the LAST cue in the text, because models often restate the requested format or
revise themselves before the final line (Yuan et al. 2024, arXiv 2401.10020, Sec. 2.3; Wu et al. 2024,
arXiv 2407.19594, Sec. 2.2). Anything that cannot be read with confidence gives ``None``; callers count
those as parse failures and discard the judgment.
"""

from __future__ import annotations

import re

# "Score: 4", "**Score:** 4", "**Score**: 4.5", "score:4/5", "Score: **3**." ; markdown emphasis tolerated.
_SCORE = re.compile(
    r"\bscore\b[\s*_]*:[\s*_]*(?P<value>[+-]?\d+(?:\.\d+)?)"
    r"(?:\s*/\s*(?P<scale>\d+(?:\.\d+)?))?(?P<rest>[^\n]*)",
    re.IGNORECASE,
)
# "Score: 3-4", "Score: 3 or 4": a range is not a score.
_RANGE_AFTER = re.compile(r"^\s*(?:-|\u2013|to|or)\s*\d")

# "Winner: Judgment A", "Winner: A", "**Winner:** judgment b", "Winner: Judgement B." ...
_WINNER = re.compile(
    r"\bwinner\b[\s*_]*:[\s*_]*(?:judge?ment[\s*_]*)?(?P<label>[ab])\b(?P<rest>[^\n]*)",
    re.IGNORECASE,
)
# "Winner: Judgment A or Judgment B", "Winner: A/B": the template echoed back, not a decision.
_SECOND_LABEL = re.compile(r"judge?ment\s*[ab]\b|\b(?:or|and)\s+[ab]\b|/\s*[ab]\b", re.IGNORECASE)


def parse_score(text: str, low: float = 0, high: float = 5) -> float | None:
    """Return the number of the last ``Score: <number>`` in ``text`` if it lies in ``[low, high]``.

    ``Score: 4/5`` reads as 4 when the denominator equals ``high`` (any other scale gives ``None``);
    a range such as ``Score: 3-4`` gives ``None``; an out-of-range last score gives ``None`` even if an
    earlier one was valid, since the last line is the judge's final answer.
    """
    matches = list(_SCORE.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    if _RANGE_AFTER.match(last["rest"]):
        return None
    if last["scale"] is not None and float(last["scale"]) != float(high):
        return None
    value = float(last["value"])
    return value if low <= value <= high else None


def parse_winner(text: str) -> str | None:
    """Return ``"A"`` or ``"B"`` from the last ``Winner: Judgment A|B`` line of a meta-judgment, else ``None``.

    A winner line that also names the other label (``Winner: Judgment A or Judgment B``) is read as
    undecided and gives ``None``.
    """
    matches = list(_WINNER.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    if _SECOND_LABEL.search(last["rest"]):
        return None
    return last["label"].upper()
