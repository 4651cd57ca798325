"""Scores for K responses from a pairwise judge, for the "pairwise judging" mode.

Instead of scoring each response alone, the judge compares responses i and j directly, once in each order.
The verdicts follow :func:`metareward.core.judge_pairs.battle_matrix`: ``verdicts[(i, j)]`` is the verdict
with response i shown first and j second, +1 when the first shown wins, -1 when the second wins, 0 for a
tie or an unreadable answer. Wins are weighted against position bias with (w1, w2) from
:func:`metareward.core.judge_pairs.positional_weights`, giving the battle matrix

    B[i, j] = w1 * [r^{ij} = +1] + w2 * [r^{ji} = -1]   (weighted wins of i over j).

Each ranking turns B into one score per response, HIGHER = BETTER, so the scores can stand in for the mean
judge scores S_k in :func:`metareward.core.actor_pairs.select_length_controlled` (whose tiers are relative
to S_max - S_min, so the scale of the scores does not matter).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from metareward.core.elo import bradley_terry_elo
from metareward.core.judge_pairs import battle_matrix

Verdicts = Mapping[tuple[int, int], int]


def _battles(num_responses: int, verdicts: Verdicts, w1: float, w2: float) -> np.ndarray:
    if num_responses < 0:
        raise ValueError(f"number of responses must be >= 0, got {num_responses}.")
    if w1 < 0 or w2 < 0:
        raise ValueError(f"positional weights must be >= 0, got w1={w1}, w2={w2}.")
    return battle_matrix(num_responses, verdicts, w1, w2)


def copeland_scores(num_responses: int, verdicts: Verdicts, w1: float, w2: float) -> np.ndarray:
    """Copeland score of each response: opponents it beats minus opponents that beat it.

        copeland_i = sum_{j != i} sign(B[i, j] - B[j, i]),

    so i beats j when its weighted wins over j exceed j's over i, and an equal count (including no
    battle) scores 0; the scores lie in [-(K - 1), K - 1] and sum to 0. With both weights > 0 the scores
    do not depend on (w1, w2): the two verdicts of one pair give equal sums on both sides or a win that
    survives any positive weights; only a zero weight (a slot that never won all iteration) changes them.
    """
    battles = _battles(num_responses, verdicts, w1, w2)
    return np.sign(battles - battles.T).sum(axis=1)


def bradley_terry_scores(num_responses: int, verdicts: Verdicts, w1: float, w2: float, l2: float) -> np.ndarray:
    """Bradley-Terry ("Elo") strengths eps of each response, centred to mean 0.

    eps = argmax sum_{i,j} B[i, j] * log sigmoid(eps_i - eps_j) - l2 / 2 * ||eps||^2, fitted by
    :func:`metareward.core.elo.bradley_terry_elo` (Wu et al. 2024, arXiv 2407.19594, Sec. 2.2), which also
    documents the ridge fallback for ``l2 == 0`` when a response never loses. Unlike Copeland, the
    strengths weigh how often and against whom a response won, so (w1, w2) can reorder them.
    """
    return bradley_terry_elo(_battles(num_responses, verdicts, w1, w2), l2=l2)


def _copeland_any_l2(num_responses: int, verdicts: Verdicts, w1: float, w2: float, l2: float) -> np.ndarray:
    # l2 has no meaning for Copeland; accepted so every ranking shares one signature.
    return copeland_scores(num_responses, verdicts, w1, w2)


PairwiseRanking = Callable[[int, Verdicts, float, float, float], np.ndarray]

PAIRWISE_RANKINGS: Mapping[str, PairwiseRanking] = {
    "copeland": _copeland_any_l2,
    "bradley_terry": bradley_terry_scores,
}


def rank_scores(method: str, num_responses: int, verdicts: Verdicts, w1: float, w2: float, *, l2: float) -> np.ndarray:
    """Scores (higher = better) of ``num_responses`` responses by the ranking named ``method``."""
    if method not in PAIRWISE_RANKINGS:
        known = ", ".join(sorted(PAIRWISE_RANKINGS))
        raise ValueError(f"Unknown pairwise ranking {method!r}; use one of: {known}.")
    return PAIRWISE_RANKINGS[method](num_responses, verdicts, w1, w2, l2)
