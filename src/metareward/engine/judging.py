"""Reading a score from a judgment and a verdict from a meta-judgment or a comparison, in the configured read mode.

parse: only a written `Score: N` / `Winner: Judgment X` line counts (the papers' behaviour).
probability: the written text is ignored past the explanation; the cue is appended and the model's next-token
  probabilities over the choices decide (expected score; A versus B). Small models rarely write the line.
hybrid: parse when the line is there, otherwise read the probabilities.
Where the probability decides, the stored text ends with the line the model found most likely, so a judgment
used as a judge-pair target always shows the format the judge is meant to write.
Each role's line (`FinalLine`) says how: its cue, its choices, where it starts and how it is parsed. The judge's
comes from the run's judge prompt (`core.prompts.JudgePrompt`); the meta-judge's `Winner: Judgment A|B` and a pairwise
comparison's `Winner: A|B` are both `winner_line`s, read by the one `read_verdicts` and calibrated by the one
`calibrated_verdicts`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from metareward.core.comparison_prompt import COMPARISON_CHOICES
from metareward.core.parsing import parse_winner
from metareward.core.prompts import JudgePrompt
from metareward.generation.sampler import Generation
from metareward.storage.records import ComparisonRecord, MetaJudgmentRecord, PhaseResult

# Two winner probabilities closer than this are a tie (verdict 0).
VERDICT_TIE_MARGIN = 1e-6
# Where a score or winner line begins within one line of text: at the line's start (after markdown list, quote,
# heading or emphasis marks) or after the end of a sentence, with an optional "Final"/"Total"/"Overall"; the cue
# word must stand alone ("relevance score:" mid-sentence or "Underscore:" do not start one).
_LINE_START = r"(?:^[ \t>#*_-]*|(?<=[.!?)\]])[ \t]+[*_]*)(?:(?:final|total|overall)[ \t]+)?"
# A line after a final "Score:" / "Winner:" line still belongs to it when it has at most this many words: the
# value of a garbled line ("Score:" then "3"; "four points"). A longer line is more explanation, so no tail.
TAIL_VALUE_WORDS = 3


@functools.cache
def line_start(label: str) -> re.Pattern[str]:
    """Where a `<label>:` line ("Score:", "Winner:") begins within one line of text (see `_LINE_START`)."""
    return re.compile(_LINE_START + re.escape(label) + r"\b[ \t*_]*:", re.IGNORECASE)


@dataclass(frozen=True)
class FinalLine:
    """The line a judging role ends its answer with: the cue appended to read the choice from probabilities (the
    line is written back as `<cue> <choice>`), the choices, where such a line starts (`tail`) and how it is parsed."""

    cue: str
    choices: tuple[str, ...]
    tail: re.Pattern[str]
    parse: Callable[[str], object | None]

    def ending(self, text: str, choice: str) -> str:
        """`text` with its final (possibly garbled) line replaced by this line naming `choice`."""
        return f"{explanation_part(text, self.tail)}\n{self.cue} {choice}".lstrip()


def score_line(prompt: JudgePrompt) -> FinalLine:
    """The judge's `Score: N` line."""
    return FinalLine(prompt.score_cue, prompt.score_choices, line_start(prompt.score_label), prompt.parse_score)


def winner_line(label: str, cue: str | None = None, choices: tuple[str, str] = COMPARISON_CHOICES) -> FinalLine:
    """An A-versus-B verdict's line, `<cue> A|B`, parsed after its `<label>:` word (`core.parsing.parse_winner`).

    The cue is `<label>:` unless given: a pairwise comparison ends `Winner: A`, the meta-judge `Winner: Judgment A`
    (its judge prompt's `winner_cue`). The first choice is the first-shown side (verdict +1), the second the other.
    """
    return FinalLine(cue or f"{label}:", choices, line_start(label), functools.partial(parse_winner, label=label))


@dataclass(frozen=True)
class Reading:
    """What one judgment or meta-judgment said: value None when nothing valid was read."""

    text: str
    value: float | None
    source: str  # parsed | probability | none
    log_odds: float | None = None  # of "A" over "B", for probability-read verdicts
    probabilities: tuple[float, ...] | None = None  # of each choice, for probability-read scores


def explanation_part(text: str, tail: re.Pattern[str]) -> str:
    """The text before its final (possibly garbled) score or winner line, or the whole text (right-stripped).

    The tail is the last line that holds a ``tail`` cue (from that cue on, "Relevant. **Score:** four"), with
    the short value lines after it (see ``TAIL_VALUE_WORDS``) and any cue lines right above it ("Score: 3" then
    "Score: 4"). A cue earlier in the text, followed by more explanation, is part of the explanation: only a
    final line is removed before the cue is appended.
    """
    lines = text.rstrip().split("\n")
    last = len(lines)
    while last > 0 and len(lines[last - 1].split()) <= TAIL_VALUE_WORDS and not tail.search(lines[last - 1]):
        last -= 1
    if last == 0 or not tail.search(lines[last - 1]):
        return text.rstrip()
    first = last - 1
    while first > 0 and (above := tail.search(lines[first - 1])) and above.start() == 0:
        first -= 1
    cue = tail.search(lines[first])
    assert cue is not None  # every line from `first` to the last cue line holds one
    return "\n".join([*lines[:first], lines[first][: cue.start()]]).rstrip()


def cue_context(prompt: str, explanation: str, cue: str) -> str:
    separator = "\n" if explanation else ""
    return f"{prompt}{explanation}{separator}{cue}"


def needs_probability(mode: str, parsed: object | None) -> bool:
    return mode == "probability" or (mode == "hybrid" and parsed is None)


def choice_contexts(prompts: Sequence[str], texts: Sequence[str], mode: str, line: FinalLine) -> dict[int, str]:
    """Index -> context (prompt, explanation, cue) for every answer whose `line` must be read from probabilities."""
    return {
        i: cue_context(prompt, explanation_part(text, line.tail), line.cue + " ")
        for i, (prompt, text) in enumerate(zip(prompts, texts))
        if needs_probability(mode, line.parse(text))
    }


def reads_from_generation(
    contexts: Mapping[int, str], generations: Sequence[Generation], tail: re.Pattern[str]
) -> dict[int, np.ndarray]:
    """Choice probabilities taken while generating (`Generation.choice_logprobs`, renormalised over the choices)
    for the contexts that are just the generated text followed by the cue.

    That holds when the text is not blank and has no final (garbled) score or winner line: `cue_context` then
    appends the cue to the text as written. The model conditioned on the tokens it generated rather than on the
    re-encoded text, and on any whitespace it wrote at the end (which `cue_context` strips) before the cue's new
    line. Every other context needs its own forward pass.
    """
    found = {}
    for i in contexts:
        generation = generations[i]
        text, logprobs = generation.text, generation.choice_logprobs
        if logprobs is not None and text.strip() and explanation_part(text, tail) == text.rstrip():
            values = np.asarray(logprobs, dtype=np.float64)
            weights = np.exp(values - values.max())
            found[i] = weights / weights.sum()
    return found


def read_scores(
    texts: Sequence[str], mode: str, probabilities: dict[int, np.ndarray], prompt: JudgePrompt
) -> list[Reading]:
    """A probability read is the expected score over the prompt's scale; the text then ends with its likeliest."""
    values = np.array(prompt.score_values)
    line = score_line(prompt)
    readings = []
    for i, text in enumerate(texts):
        if i in probabilities:
            p = probabilities[i]
            best = values[int(np.argmax(p))]
            text = line.ending(text, f"{best:g}")
            readings.append(Reading(text, float(p @ values), "probability", probabilities=tuple(map(float, p))))
        else:
            score = prompt.parse_score(text) if mode != "probability" else None
            readings.append(Reading(text.strip(), score, "parsed" if score is not None else "none"))
    return readings


def read_verdicts(
    texts: Sequence[str], mode: str, probabilities: dict[int, np.ndarray], line: FinalLine
) -> list[Reading]:
    """Verdict +1 when the first-shown side (`line.choices[0]`, "A") wins, -1 when the other does, 0 for a tie or
    nothing readable: the meta-judge's verdicts and pairwise comparisons alike.

    A probability read keeps its log-odds of the first choice over the second, for `calibrated_verdicts`, and its
    text ends with the likelier line.
    """
    first, second = line.choices
    readings = []
    for i, text in enumerate(texts):
        if i in probabilities:
            log_odds = float(np.log(probabilities[i][0] + 1e-12) - np.log(probabilities[i][1] + 1e-12))
            verdict = decided_verdict(log_odds)
            readings.append(Reading(with_winner(text, verdict, line), float(verdict), "probability", log_odds))
        else:
            winner = line.parse(text) if mode != "probability" else None
            value = {first: 1.0, second: -1.0}.get(winner or "")  # type: ignore[call-overload]
            readings.append(Reading(text.strip(), value, "parsed" if value is not None else "none"))
    return readings


def decided_verdict(log_odds: float) -> int:
    return 0 if abs(log_odds) <= VERDICT_TIE_MARGIN else (1 if log_odds > 0 else -1)


def with_winner(text: str, verdict: int, line: FinalLine) -> str:
    """`text` ending with `line` naming the verdict's winner (a tie is written as the first side)."""
    return line.ending(text, line.choices[0] if verdict >= 0 else line.choices[1])


VerdictRecord = TypeVar("VerdictRecord", MetaJudgmentRecord, ComparisonRecord)


def calibrated_verdicts(records: Sequence[VerdictRecord], line: FinalLine) -> list[VerdictRecord]:
    """Probability-read verdicts decided against the reader's usual preference for one slot.

    A small meta-judge often says "A" whatever it reads (SmolLM2-135M: P(A) ~ 0.8 for every pair), which carries
    no information and, through the positional weights, empties the battle matrix. Contextual calibration
    (Zhao et al. 2021, arXiv 2102.09690) removes that prior: each log-odds of "A" over "B" is compared with their
    median over `records` (the whole iteration's), so a verdict goes to A when the model favours A more than it
    usually does; its text then ends with `line` naming the new winner. Our addition, not the paper's; parsed
    verdicts are left as they are. Meta-judge verdicts and pairwise comparisons are calibrated this one way.
    """
    read = [r.log_odds for r in records if r.verdict_source == "probability" and r.log_odds is not None]
    if not read:
        return list(records)
    centre = float(np.median(read))
    calibrated = []
    for record in records:
        if record.verdict_source == "probability" and record.log_odds is not None:
            verdict = decided_verdict(record.log_odds - centre)
            record = replace(record, verdict=verdict, text=with_winner(record.text, verdict, line))
        calibrated.append(record)
    return calibrated


def calibrated(result: PhaseResult, line: FinalLine) -> PhaseResult:
    """A verdict stage's result with `calibrated_verdicts`, its counts as they were."""
    return PhaseResult(calibrated_verdicts(result.records, line), result.drops, result.parse_failures)
