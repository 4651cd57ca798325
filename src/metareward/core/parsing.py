"""Read the score out of a judgment and the winner out of a meta-judgment.

Both parsers look at the LAST cue in the text, because models often restate the requested format or
revise themselves before the final line (Yuan et al. 2024, arXiv 2401.10020, Sec. 2.3; Wu et al. 2024,
arXiv 2407.19594, Sec. 2.2). Anything that cannot be read with confidence gives ``None``; callers count
those as parse failures and discard the judgment.
"""

from __future__ import annotations

import functools
import re


# "Score: 4", "**Score:** 4", "**Score**: 4.5", "score:4/5", "Score: **3**." ; markdown emphasis tolerated. The label
# ("Score") is the judge prompt's (`JudgePrompt.score_label`), so the line has one definition.
@functools.cache
def _score_pattern(label: str) -> re.Pattern[str]:
    return re.compile(
        rf"\b{re.escape(label)}\b[\s*_]*:[\s*_]*(?P<value>[+-]?\d+(?:\.\d+)?)"
        r"(?:\s*/\s*(?P<scale>\d+(?:\.\d+)?))?(?P<rest>[^\n]*)",
        re.IGNORECASE,
    )


# "Score: 3-4", "Score: 3 or 4": a range is not a score.
_RANGE_AFTER = re.compile(r"^\s*(?:-|\u2013|to|or)\s*\d")

# What may stand between "Winner:" and its label, or open a second label: whitespace, markdown emphasis,
# brackets and quotes ("**Winner:** [Judgement A]", 'Winner: "B"').
_OPENERS = r"[\s*_\[(\"'`\u201c\u2018]*"
# A label: "Judgment X" / "Judgement X" in any case, or a bare letter. A bare lower-case "a" followed by a word is
# the article ("Winner: a tie"), not a label.
_LABEL = rf"(?:judge?ment{_OPENERS}(?P<named>[ab])|(?-i:(?P<bare>[AB]|b|a(?![ \t]+[a-z]))))\b"


@functools.cache
def _winner_patterns(label: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(the winner line, a second label joined to the first) for the cue word `label` ("Winner")."""
    cue = rf"\b{re.escape(label)}\b[\s*_]*:"
    # "Winner: Judgment A", "Winner: A", "**Winner:** judgment b", "Winner: [Judgement B].", "Winner: Judgment A
    # because Judgment B misses point 3": the first label right after the cue. `rest` runs to the line's end or the
    # next cue.
    winner = re.compile(rf"{cue}{_OPENERS}{_LABEL}(?P<rest>(?:(?!{cue})[^\n])*)", re.IGNORECASE)
    # "Winner: Judgment A or Judgment B", "Winner: A/B", '"Winner: A" or "Winner: B"': the template echoed back, not
    # a decision. Only a second label joined straight to the first counts; "A, and a clear one" or "A because B" do
    # not.
    second = re.compile(
        rf"[\s*_\])\"'`\u201d\u2019]*(?:\bor\b|\band\b|\bnor\b|\bvs\b\.?|\bversus\b|[/|&,])"
        rf"{_OPENERS}(?:{cue}{_OPENERS})?{_LABEL}",
        re.IGNORECASE,
    )
    return winner, second


def parse_score(text: str, *, low: float, high: float, label: str) -> float | None:
    """Return the number of the last ``<label>: <number>`` (``Score: 4``) in ``text`` if it lies in ``[low, high]``.

    ``Score: 4/5`` reads as 4 when the denominator equals ``high`` (any other scale gives ``None``);
    a range such as ``Score: 3-4`` gives ``None``; an out-of-range last score gives ``None`` even if an
    earlier one was valid, since the last line is the judge's final answer.
    """
    matches = list(_score_pattern(label).finditer(text))
    if not matches:
        return None
    last = matches[-1]
    if _RANGE_AFTER.match(last["rest"]):
        return None
    if last["scale"] is not None and float(last["scale"]) != float(high):
        return None
    value = float(last["value"])
    return value if low <= value <= high else None


def parse_winner(text: str, *, label: str) -> str | None:
    """Return ``"A"`` or ``"B"``: the first label after the last ``<label>:`` cue (``Winner:``) that has one, else
    ``None``.

    The label may be wrapped in markdown emphasis, brackets or quotes and written ``Judgment X``, ``Judgement X``
    or ``X``; what follows it on the line is ignored ("Winner: Judgment A because Judgment B misses point 3" is
    A), unless it is the other label joined by "or", "and", "/" and the like (``Winner: Judgment A or Judgment
    B``, ``Winner: A/B``, ``"Winner: A" or "Winner: B"``): that is the template echoed back, read as undecided
    (``None``). A cue with no label right after it ("Winner: a tie") is skipped for an earlier one.
    """
    winner, second_label = _winner_patterns(label)
    matches = list(winner.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    echoed = second_label.match(text, last.start("rest")) is not None
    if len(matches) > 1 and matches[-2].end() == last.start():  # the second cue of '"Winner: A" or "Winner: B"'
        echoed = echoed or second_label.match(text, matches[-2].start("rest")) is not None
    return None if echoed else (last["named"] or last["bare"]).upper()
