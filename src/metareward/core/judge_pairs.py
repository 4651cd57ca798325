"""Build judge preference pairs from meta-judge verdicts (Wu et al. 2024, arXiv 2407.19594, Sec. 2.2).

Steps for one prompt: take the response whose judgment scores vary most, let the meta-judge compare
every ordered pair of its judgments, weight the verdicts against positional bias, fit Bradley-Terry
strengths (:func:`metareward.core.elo.bradley_terry_elo`), and pair the strongest with the weakest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from metareward.core.drops import JUDGMENT_TOO_LONG, NO_STRICT_ORDER, TOO_FEW_JUDGMENTS

# Later variances must beat the current best by more than this to take over, so float noise between
# equal variances cannot break the "lowest index wins" rule.
VARIANCE_TOL = 1e-12
_VERDICTS = (-1, 0, 1)


@dataclass(frozen=True)
class JudgeChoice:
    """A judge preference pair: the highest- and lowest-rated judgments of one response."""

    chosen_index: int
    chosen_text: str
    chosen_elo: float
    rejected_index: int
    rejected_text: str
    rejected_elo: float


def mean_valid_score(scores: Sequence[float | None]) -> float | None:
    """Mean of the non-``None`` scores (the response score S_k of METHOD step 3); ``None`` if there are none."""
    valid = [s for s in scores if s is not None]
    return float(np.mean(valid)) if valid else None


def highest_variance_response(scores_per_response: Sequence[Sequence[float | None]]) -> int | None:
    """Index of the response whose valid judge scores have the largest population variance.

    Var = mean((s - mean(s))^2) over the valid scores. Only responses with at least two valid scores
    qualify; ties go to the lowest index; ``None`` when no response qualifies.
    """
    best_index, best_variance = None, -np.inf
    for index, scores in enumerate(scores_per_response):
        valid = [s for s in scores if s is not None]
        if len(valid) < 2:
            continue
        variance = float(np.var(valid))
        if variance > best_variance + VARIANCE_TOL:
            best_index, best_variance = index, variance
    return best_index


def ordered_pairs(n: int) -> list[tuple[int, int]]:
    """Every ordered pair (m, k) with m != k over ``range(n)``: n * (n - 1) meta-judge calls, first-shown first."""
    if n < 0:
        raise ValueError(f"number of judgments must be >= 0, got {n}.")
    return [(m, k) for m in range(n) for k in range(n) if m != k]


def _check_verdict(verdict: int) -> int:
    if verdict not in _VERDICTS:
        raise ValueError(f"verdict must be +1 (first shown wins), -1 (second wins) or 0, got {verdict!r}.")
    return verdict


def positional_weights(verdicts: Iterable[int]) -> tuple[float, float]:
    """Weights (w1, w2) for wins from the first and the second slot, pooled over a whole iteration.

    w1 = win_2nd / (win_1st + win_2nd),  w2 = win_1st / (win_1st + win_2nd),
    so a win from the slot the meta-judge favours counts less. Ties (0) are ignored. With no wins at
    all there is no bias to correct and (0.5, 0.5) is returned.
    """
    win_first = win_second = 0
    for verdict in verdicts:
        verdict = _check_verdict(verdict)
        win_first += verdict == 1
        win_second += verdict == -1
    total = win_first + win_second
    if total == 0:
        return 0.5, 0.5
    return win_second / total, win_first / total


def battle_matrix(num_judgments: int, verdicts: Mapping[tuple[int, int], int], w1: float, w2: float) -> np.ndarray:
    """Weighted win counts B with B[m, n] = w1 * [r^{mn} = +1] + w2 * [r^{nm} = -1].

    ``verdicts[(m, n)]`` is r^{mn}, the verdict when judgment m was shown first and n second; missing
    pairs count as no battle.
    """
    battles = np.zeros((num_judgments, num_judgments))
    for (first, second), verdict in verdicts.items():
        if first == second or not (0 <= first < num_judgments and 0 <= second < num_judgments):
            raise ValueError(
                f"verdict key {(first, second)} is not a pair of distinct judgments in 0..{num_judgments - 1}."
            )
        verdict = _check_verdict(verdict)
        if verdict == 1:
            battles[first, second] += w1
        elif verdict == -1:
            battles[second, first] += w2
    return battles


def _unique_extreme(values: np.ndarray, index: int, tol: float) -> bool:
    return int(np.sum(np.abs(values - values[index]) <= tol)) == 1


def select_judge_pair(
    judgment_texts: Sequence[str], elo: np.ndarray, max_chars: int | None, tol: float = 1e-6
) -> JudgeChoice | str:
    """Pair the judgment with the highest eps (chosen) against the one with the lowest (rejected).

    Drops: fewer than two judgments -> ``"too_few_judgments"``; the top or the bottom strength shared
    by another judgment within ``tol`` (including all equal) -> ``"no_strict_order"``; the chosen text
    longer than ``max_chars`` characters (``None`` = no cap) -> ``"judgment_too_long"``.
    """
    strengths = np.asarray(elo, dtype=float)
    if strengths.shape != (len(judgment_texts),):
        raise ValueError(f"elo has shape {strengths.shape} but there are {len(judgment_texts)} judgments.")
    if len(judgment_texts) < 2:
        return TOO_FEW_JUDGMENTS
    top, bottom = int(np.argmax(strengths)), int(np.argmin(strengths))
    if not (_unique_extreme(strengths, top, tol) and _unique_extreme(strengths, bottom, tol)):
        return NO_STRICT_ORDER
    if max_chars is not None and len(judgment_texts[top]) > max_chars:
        return JUDGMENT_TOO_LONG
    return JudgeChoice(
        chosen_index=top,
        chosen_text=judgment_texts[top],
        chosen_elo=float(strengths[top]),
        rejected_index=bottom,
        rejected_text=judgment_texts[bottom],
        rejected_elo=float(strengths[bottom]),
    )
