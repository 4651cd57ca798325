"""Consistency of two reward rankings of the same responses (CREAM: Wang et al. 2024, arXiv 2410.12735).

CREAM ranks a prompt's responses twice, with the previous iteration's reward and with the current one, and
measures how far the two rankings agree with Kendall's tau. The agreement, mapped to [0, 1],

    C = (tau_b + 1) / 2,

is 1 for the same order, 0 for the reversed order and 1/2 for unrelated orders. CREAM averages it over the
prompts of an iteration and uses it as the soft label q of the self-rewarded pairs (see `core.losses`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def _as_vector(name: str, values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of scores, got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite scores; drop unscored responses before ranking.")
    return array


def _pair_signs(values: np.ndarray) -> np.ndarray:
    """sign(v_i - v_j) for every unordered pair i < j, in a fixed pair order."""
    upper_i, upper_j = np.triu_indices(len(values), k=1)
    return np.sign(values[upper_i] - values[upper_j])


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b of two score vectors over the same items, with the correction for ties.

    Over the n0 = n (n - 1) / 2 unordered pairs (i, j), let n_c and n_d count the concordant pairs
    (sign(x_i - x_j) * sign(y_i - y_j) > 0) and the discordant ones (< 0), and n_x, n_y the pairs tied in
    x and in y (a pair tied in both counts in both). Then

        tau_b = (n_c - n_d) / sqrt((n0 - n_x) * (n0 - n_y)),

    the same value as ``scipy.stats.kendalltau``'s default. Only the orders matter, so raw scores can be
    passed in place of ranks; scores are compared exactly (equal means of equal judge scores tie).
    ``None`` when tau is undefined: fewer than two items, or every pair tied on one side.
    """
    xs, ys = _as_vector("x", x), _as_vector("y", y)
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must score the same items, got {len(xs)} and {len(ys)} scores.")
    sign_x, sign_y = _pair_signs(xs), _pair_signs(ys)
    total = len(sign_x)
    untied_x = total - int(np.sum(sign_x == 0))
    untied_y = total - int(np.sum(sign_y == 0))
    if untied_x == 0 or untied_y == 0:
        return None
    agreement = sign_x * sign_y
    concordant, discordant = int(np.sum(agreement > 0)), int(np.sum(agreement < 0))
    return (concordant - discordant) / float(np.sqrt(untied_x * untied_y))


def consistency(previous_scores: Sequence[float], current_scores: Sequence[float]) -> float | None:
    """CREAM's consistency C = (tau_b + 1) / 2 in [0, 1] of two scorings of one prompt's responses.

    ``previous_scores[k]`` and ``current_scores[k]`` score the same response k (C is symmetric in the two).
    ``None`` where :func:`kendall_tau_b` is undefined.
    """
    tau = kendall_tau_b(previous_scores, current_scores)
    return None if tau is None else (tau + 1.0) / 2.0


def dataset_consistency(values: Iterable[float | None]) -> float | None:
    """Mean of the defined per-prompt consistencies (CREAM's "avg" variant); ``None`` if none is defined."""
    defined = [float(value) for value in values if value is not None]
    return float(np.mean(defined)) if defined else None
