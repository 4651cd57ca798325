"""Evaluation figures as pure functions: win rates, the length-controlled win rate, an Arena-Hard-style score with a
bootstrap interval, and the judge's agreement with labelled preferences.

Convention: a preference p in [0, 1] is the probability that the evaluated model's answer beats the baseline's
(0.5 = tie). Lengths are in characters, as in AlpacaEval 2 and the Meta-Rewarding paper (Wu et al. 2024,
arXiv 2407.19594, Sec. 4).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from metareward.core.prompts import ADDITIVE_FIVE_POINT

LC_GLM = "length_controlled_minimal"


def _preferences(preferences: Sequence[float]) -> np.ndarray:
    values = np.asarray(preferences, dtype=np.float64)
    if values.ndim != 1 or not np.all((values >= 0) & (values <= 1)):
        raise ValueError("preferences must be a flat sequence of probabilities in [0, 1].")
    return values


def win_rate(preferences: Sequence[float]) -> float:
    """Raw win rate in percent: 100 * mean(p). A tie (p = 0.5) counts half, as in AlpacaEval."""
    values = _preferences(preferences)
    return float(100.0 * values.mean()) if len(values) else math.nan


def both_orders(p_model_first: Sequence[float], p_baseline_first: Sequence[float]) -> np.ndarray:
    """Position-debiased preference for the model: p = (P(A|model, baseline) + 1 - P(A|baseline, model)) / 2."""
    first, second = _preferences(p_model_first), _preferences(p_baseline_first)
    if first.shape != second.shape:
        raise ValueError("both orders need one probability per prompt each.")
    return 0.5 * (first + (1.0 - second))


def average_length(texts: Sequence[str]) -> float:
    """Mean length in characters (nan for no texts)."""
    return float(np.mean([len(t) for t in texts])) if texts else math.nan


def lc_win_rate(preferences: Sequence[float], model_lengths: Sequence[int], baseline_lengths: Sequence[int]) -> float:
    """Length-controlled win rate in percent, with AlpacaEval's own GLM (Dubois et al. 2024, arXiv 2404.04475).

    The GLM is `length_controlled_minimal`: logit P(model wins) = theta + phi * tanh(delta / sd(delta)), with
    delta = baseline length - model length (AlpacaEval's sign), fitted on the soft preferences by
    `fit_LogisticRegressionCV` (cross-validated L1 logistic regression) on `make_dmatrix_for_model`'s design matrix,
    then predicted at delta = 0 and averaged: LC = 100 * mean_i sigmoid(theta). We call these building blocks on
    our annotations because the top-level `get_length_controlled_winrate` downloads AlpacaEval's own data.
    Returns nan when the GLM cannot be fitted: fewer prompts than CV folds, or all length differences equal.
    """
    import pandas as pd

    with warnings.catch_warnings():  # alpaca_eval 0.6 imports pkg_resources, which warns on import
        warnings.simplefilter("ignore")
        from alpaca_eval.metrics.glm_winrate import GLM_INFO, fit_LogisticRegressionCV, make_dmatrix_for_model

    values = _preferences(preferences)
    info = GLM_INFO[LC_GLM]
    delta = pd.Series(np.asarray(baseline_lengths, dtype=np.float64) - np.asarray(model_lengths, dtype=np.float64))
    spread = delta.std()
    if len(values) != len(delta) or len(values) < info["kwargs"]["n_splits"] or not spread > 0:
        return math.nan
    train = pd.DataFrame({"preference": values, "std_delta_len": delta / spread, "not_gamed_baseline": True})
    test = train[["not_gamed_baseline"]].copy()
    test["std_delta_len"] = 0
    design, design_test = make_dmatrix_for_model(train, test, formula=info["formula"])
    with warnings.catch_warnings():  # sklearn's FutureWarnings about alpaca_eval's arguments, not ours to fix
        warnings.simplefilter("ignore", FutureWarning)
        model = fit_LogisticRegressionCV(design, "preference", is_ytrue_proba=True, **info["kwargs"])
    return float(100.0 * model.predict_proba(design_test)[:, 1].mean())


@dataclass(frozen=True)
class ArenaScore:
    """Score and bootstrap percentile interval, all in percent."""

    score: float
    low: float
    high: float


def game_outcomes(preferences: Sequence[float], tie_margin: float) -> np.ndarray:
    """Discrete result of each judged game: 1 win, 0.5 tie (|p - 0.5| <= tie_margin), 0 loss."""
    values = _preferences(preferences)
    return np.where(np.abs(values - 0.5) <= tie_margin, 0.5, (values > 0.5).astype(np.float64))


def arena_score(
    p_model_first: Sequence[float],
    p_baseline_first: Sequence[float],
    tie_margin: float = 0.05,
    num_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> ArenaScore:
    """Arena-Hard-style score against one baseline (Li et al. 2024, arXiv 2406.11939).

    Each order is one game, judged win/tie/loss (see `game_outcomes`); the score is 100 * mean outcome over the 2n
    games. With one model against one baseline the Bradley-Terry fit Arena-Hard uses predicts exactly this mean.
    The interval: resample prompts with replacement (a prompt's two games stay together) `num_bootstrap` times and
    take the (1 - confidence)/2 and (1 + confidence)/2 quantiles of the resampled scores.
    """
    outcomes = np.stack(
        [game_outcomes(p_model_first, tie_margin), 1.0 - game_outcomes(p_baseline_first, tie_margin)], axis=1
    )
    if not len(outcomes):
        return ArenaScore(math.nan, math.nan, math.nan)
    interval = mean_interval(100.0 * outcomes.mean(axis=1), num_bootstrap, confidence, seed)
    return ArenaScore(interval.mean, interval.low, interval.high)


@dataclass(frozen=True)
class MeanInterval:
    """A mean over prompts and its bootstrap percentile interval."""

    mean: float
    low: float
    high: float


def mean_interval(
    values: Sequence[float], num_bootstrap: int = 200, confidence: float = 0.95, seed: int = 0
) -> MeanInterval:
    """The mean of per-prompt values and its percentile bootstrap interval (Efron and Tibshirani 1993, ch. 13).

    Resample the prompts with replacement `num_bootstrap` times; the interval is the (1 - confidence)/2 and
    (1 + confidence)/2 quantiles of the resampled means. nan throughout for no values.
    """
    per_prompt = np.asarray(values, dtype=np.float64)
    if per_prompt.ndim != 1:
        raise ValueError("mean_interval needs a flat sequence of per-prompt values.")
    if not len(per_prompt):
        return MeanInterval(math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(per_prompt), size=(num_bootstrap, len(per_prompt)))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(per_prompt[draws].mean(axis=1), [tail, 1.0 - tail])
    return MeanInterval(float(per_prompt.mean()), float(low), float(high))


def _correlation(result) -> float | None:
    value = float(result.statistic)
    return value if math.isfinite(value) else None


def judge_agreement(
    good_scores: Sequence[float],
    poor_scores: Sequence[float],
    good_labels: Sequence[float],
    poor_labels: Sequence[float],
    tie_tolerance: float = 0.0,
) -> dict[str, float | None]:
    """How well the judge's scores agree with labelled preferences (Yuan et al. 2024, arXiv 2401.10020, Sec. 3.3).

    Each labelled pair has a better (`good`) and a worse (`poor`) answer. A pair is a judge tie when
    |s_good - s_poor| <= tie_tolerance.
    - judge_accuracy: share of the judge's non-tied pairs ordered as labelled (judge ties left out);
    - judge_accuracy_with_ties: share of all pairs ordered as labelled (a judge tie counts as a miss);
    - judge_tie_rate: share of pairs the judge tied;
    - judge_spearman, judge_kendall: Spearman rho and Kendall tau-b of the judge's scores against the labelled
      scores over all 2n answers (None when either side is constant).
    """
    from scipy.stats import kendalltau, spearmanr

    good, poor = np.asarray(good_scores, dtype=np.float64), np.asarray(poor_scores, dtype=np.float64)
    if good.shape != poor.shape or good.shape != (len(good_labels),) or len(poor_labels) != len(good_labels):
        raise ValueError("judge_agreement needs one judge score and one label per answer of every pair.")
    margin = good - poor
    tied = np.abs(margin) <= tie_tolerance
    correct = (margin > 0) & ~tied
    scores = np.concatenate([good, poor])
    labels = np.concatenate([np.asarray(good_labels, float), np.asarray(poor_labels, float)])
    constant = len(scores) < 2 or np.ptp(scores) == 0 or np.ptp(labels) == 0
    return {
        "judge_accuracy": float(correct.sum() / (~tied).sum()) if (~tied).any() else None,
        "judge_accuracy_with_ties": float(correct.mean()) if len(good) else None,
        "judge_tie_rate": float(tied.mean()) if len(good) else None,
        "judge_spearman": None if constant else _correlation(spearmanr(scores, labels)),
        "judge_kendall": None if constant else _correlation(kendalltau(scores, labels)),
    }


def score_distribution(
    scores: Sequence[float], bins: Sequence[float] = ADDITIVE_FIVE_POINT.score_values
) -> dict[str, float]:
    """Mean, standard deviation and the share of scores nearest to each bin value (probability scores are real);
    the bins are a judge prompt's `score_values` (the default prompt's when not given)."""
    values = np.asarray([s for s in scores if s is not None], dtype=np.float64)
    if not len(values):
        return {}
    centres = np.asarray(bins, dtype=np.float64)
    nearest = np.abs(values[:, None] - centres[None, :]).argmin(axis=1)
    shares = np.bincount(nearest, minlength=len(centres)) / len(values)
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        **{f"share_{b:g}": float(s) for b, s in zip(centres, shares)},
    }
