"""Reading a score from a judgment and a verdict from a meta-judgment, in the configured read mode.

parse: only a written `Score: N` / `Winner: Judgment X` line counts (the papers' behaviour).
probability: the written text is ignored past the explanation; the cue is appended and the model's next-token
  probabilities over the choices decide (expected score; A versus B). Small models rarely write the line.
hybrid: parse when the line is there, otherwise read the probabilities.
Where the probability decides, the stored text ends with the line the model found most likely, so a judgment
used as a judge-pair target always shows the format the judge is meant to write.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from metareward.core.parsing import parse_score, parse_winner
from metareward.core.prompts import SCORE_CHOICES, SCORE_CUE, WINNER_CHOICES, WINNER_CUE

# Two winner probabilities closer than this are a tie (verdict 0).
VERDICT_TIE_MARGIN = 1e-6
_SCORE_TAIL = re.compile(r"\**\s*score\s*\**\s*:.*$", re.IGNORECASE | re.DOTALL)
_WINNER_TAIL = re.compile(r"\**\s*winner\s*\**\s*:.*$", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Reading:
    """What one judgment or meta-judgment said: value None when nothing valid was read."""

    text: str
    value: float | None
    source: str  # parsed | probability | none


def explanation_part(text: str, tail: re.Pattern[str]) -> str:
    """The text before a final (possibly garbled) score or winner line."""
    return tail.sub("", text.rstrip()).rstrip()


def cue_context(prompt: str, explanation: str, cue: str) -> str:
    separator = "\n" if explanation else ""
    return f"{prompt}{explanation}{separator}{cue}"


def needs_probability(mode: str, parsed: object | None) -> bool:
    return mode == "probability" or (mode == "hybrid" and parsed is None)


def score_contexts(prompts: Sequence[str], texts: Sequence[str], mode: str) -> dict[int, str]:
    """Index -> context for every judgment whose score must be read from probabilities."""
    return {
        i: cue_context(prompt, explanation_part(text, _SCORE_TAIL), SCORE_CUE + " ")
        for i, (prompt, text) in enumerate(zip(prompts, texts))
        if needs_probability(mode, parse_score(text))
    }


def winner_contexts(prompts: Sequence[str], texts: Sequence[str], mode: str) -> dict[int, str]:
    return {
        i: cue_context(prompt, explanation_part(text, _WINNER_TAIL), WINNER_CUE + " ")
        for i, (prompt, text) in enumerate(zip(prompts, texts))
        if needs_probability(mode, parse_winner(text))
    }


def read_scores(texts: Sequence[str], mode: str, probabilities: dict[int, np.ndarray]) -> list[Reading]:
    values = np.array([float(choice) for choice in SCORE_CHOICES])
    readings = []
    for i, text in enumerate(texts):
        if i in probabilities:
            p = probabilities[i]
            best = SCORE_CHOICES[int(np.argmax(p))]
            body = explanation_part(text, _SCORE_TAIL)
            readings.append(Reading(f"{body}\n{SCORE_CUE} {best}".lstrip(), float(p @ values), "probability"))
        else:
            score = parse_score(text) if mode != "probability" else None
            readings.append(Reading(text.strip(), score, "parsed" if score is not None else "none"))
    return readings


def position_offsets(probabilities: dict[int, np.ndarray], calibrate: bool) -> dict[int, float]:
    """Log-odds of "A" over "B" per verdict, minus their median over the iteration when `calibrate` is on.

    A small meta-judge often says "A" whatever it reads (SmolLM2-135M: P(A) ~ 0.8 for every pair), which carries
    no information and, through the positional weights, empties the battle matrix. Contextual calibration
    (Zhao et al. 2021, arXiv 2102.09690) removes that prior: a verdict goes to A when the model favours A more
    than it usually does. This is our addition, not the paper's; it applies only to probability reads.
    """
    log_odds = {i: float(np.log(p[0] + 1e-12) - np.log(p[1] + 1e-12)) for i, p in probabilities.items()}
    if calibrate and log_odds:
        centre = float(np.median(list(log_odds.values())))
        log_odds = {i: value - centre for i, value in log_odds.items()}
    return log_odds


def read_verdicts(
    texts: Sequence[str], mode: str, probabilities: dict[int, np.ndarray], calibrate: bool = False
) -> list[Reading]:
    """Verdict +1 when judgment A (shown first) wins, -1 when B wins, 0 for a tie or nothing readable."""
    log_odds = position_offsets(probabilities, calibrate)
    readings = []
    for i, text in enumerate(texts):
        if i in probabilities:
            verdict = 0 if abs(log_odds[i]) <= VERDICT_TIE_MARGIN else (1 if log_odds[i] > 0 else -1)
            label = WINNER_CHOICES[0] if verdict >= 0 else WINNER_CHOICES[1]
            body = explanation_part(text, _WINNER_TAIL)
            readings.append(Reading(f"{body}\n{WINNER_CUE} {label}".lstrip(), float(verdict), "probability"))
        else:
            winner = parse_winner(text) if mode != "probability" else None
            verdict = {"A": 1.0, "B": -1.0}.get(winner or "", None)
            readings.append(Reading(text.strip(), verdict, "parsed" if verdict is not None else "none"))
    return readings
