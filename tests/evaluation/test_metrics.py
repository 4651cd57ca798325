"""Evaluation metrics against hand-worked examples and independent implementations (alpaca_eval, scipy, sklearn)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau, spearmanr
from sklearn.metrics import accuracy_score

from metareward.evaluation.metrics import (
    arena_score,
    average_length,
    both_orders,
    game_outcomes,
    judge_agreement,
    lc_win_rate,
    mean_interval,
    score_distribution,
    win_rate,
)


@pytest.fixture()
def alpaca_glm(tmp_path, monkeypatch):
    """alpaca_eval's glm_winrate module with its hub download replaced by a local df_gamed.csv. The minimal GLM does
    not use the file's contents (instruction difficulty, gamed baselines), it only looks them up."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import alpaca_eval.metrics.glm_winrate as glm

    path = tmp_path / "df_gamed.csv"
    pd.DataFrame({"model": "unused", "index": range(200), "instruction_difficulty": 0.0}).to_csv(path, index=False)
    monkeypatch.setattr(glm, "hf_hub_download", lambda **kwargs: str(path))
    return glm


def synthetic_annotations(n: int, bias: float, slope: float, seed: int):
    rng = np.random.default_rng(seed)
    model_lengths = rng.integers(20, 900, n)
    baseline_lengths = rng.integers(20, 900, n)
    delta = baseline_lengths - model_lengths
    logits = bias - slope * np.tanh(delta / delta.std(ddof=1)) + rng.normal(0.0, 0.5, n)
    return 1.0 / (1.0 + np.exp(-logits)), model_lengths, baseline_lengths


@pytest.mark.parametrize(
    ("n", "bias", "slope", "seed"),
    [(16, 1.0, 2.0, 0), (24, -1.0, 1.0, 1), (40, 0.5, 3.0, 2), (12, 2.0, 0.0, 3), (60, 0.0, 1.5, 4)],
)
def test_lc_win_rate_equals_alpaca_eval_on_the_same_annotations(alpaca_glm, n, bias, slope, seed) -> None:
    preferences, model_lengths, baseline_lengths = synthetic_annotations(n, bias, slope, seed)
    annotations = [
        # alpaca_eval: output_1/generator_1 is the baseline, preference 1 + P(output_2 wins)
        {
            "preference": 1.0 + p,
            "output_1": "b" * int(lb),
            "output_2": "m" * int(lm),
            "generator_1": "baseline",
            "generator_2": "model",
            "annotator": "test",
        }
        for p, lm, lb in zip(preferences, model_lengths, baseline_lengths)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = alpaca_glm.get_length_controlled_winrate(
            annotations, glm_name="length_controlled_minimal", save_weights_dir=None
        )
    assert lc_win_rate(preferences, model_lengths, baseline_lengths) == pytest.approx(
        expected["length_controlled_winrate"], abs=1e-6
    )
    assert win_rate(preferences) == pytest.approx(expected["win_rate"], abs=1e-6)


def test_lc_win_rate_is_nan_when_the_glm_cannot_be_fitted() -> None:
    assert math.isnan(lc_win_rate([0.6] * 4, [10, 20, 30, 40], [40, 30, 20, 10]))  # fewer prompts than CV folds
    assert math.isnan(lc_win_rate([0.6, 0.4] * 4, [50] * 8, [60] * 8))  # every length difference equal


def test_win_rate_and_both_orders_by_hand() -> None:
    assert win_rate([1.0, 0.0, 0.5, 0.75]) == pytest.approx(56.25)
    # p = (P(A | model first) + 1 - P(A | baseline first)) / 2
    assert both_orders([0.9, 0.2], [0.3, 0.6]) == pytest.approx([0.8, 0.3])
    assert average_length(["abc", "abcdefg"]) == 5.0 and math.isnan(average_length([]))
    with pytest.raises(ValueError):
        win_rate([1.2])


def test_arena_score_by_hand() -> None:
    assert list(game_outcomes([0.9, 0.52, 0.1], tie_margin=0.05)) == [1.0, 0.5, 0.0]
    # games: model-first outcomes [1, .5, 0]; baseline-first P(A) [.2, .52, .9] -> model outcomes [1, .5, 0]
    result = arena_score([0.9, 0.52, 0.1], [0.2, 0.52, 0.9], tie_margin=0.05, num_bootstrap=500, seed=3)
    assert result.score == pytest.approx(50.0)
    assert 0.0 <= result.low <= result.score <= result.high <= 100.0 and result.high - result.low > 10
    # the interval is the quantiles of means over prompts resampled with the same generator
    draws = np.random.default_rng(3).integers(0, 3, size=(500, 3))
    means = np.array([1.0, 0.5, 0.0])[draws].mean(axis=1)
    assert [result.low, result.high] == pytest.approx(list(100 * np.quantile(means, [0.025, 0.975])))
    sweep = arena_score([0.9] * 5, [0.1] * 5)
    assert (sweep.score, sweep.low, sweep.high) == (100.0, 100.0, 100.0)


def test_judge_agreement_by_hand_and_against_scipy_and_sklearn() -> None:
    good, poor = [4.0, 3.0, 2.0, 5.0, 3.5], [1.0, 3.0, 4.0, 2.0, 3.0]
    good_labels, poor_labels = [5, 4, 3, 5, 4], [1, 2, 1, 0, 2]
    result = judge_agreement(good, poor, good_labels, poor_labels, tie_tolerance=0.0)
    # margins 3, 0 (tie), -2, 3, 0.5: three right of four untied, three right of five overall
    assert result["judge_accuracy"] == pytest.approx(3 / 4)
    assert result["judge_accuracy_with_ties"] == pytest.approx(3 / 5)
    assert result["judge_accuracy_with_ties"] == pytest.approx(
        accuracy_score([1] * 5, (np.array(good) > np.array(poor)).astype(int))
    )
    assert result["judge_tie_rate"] == pytest.approx(1 / 5)
    scores, labels = good + poor, good_labels + poor_labels
    assert result["judge_spearman"] == pytest.approx(spearmanr(scores, labels).statistic)
    assert result["judge_kendall"] == pytest.approx(kendalltau(scores, labels).statistic)
    # a wider tie tolerance turns the 0.5 margin into a tie
    wide = judge_agreement(good, poor, good_labels, poor_labels, tie_tolerance=0.5)
    assert wide["judge_accuracy"] == pytest.approx(2 / 3) and wide["judge_tie_rate"] == pytest.approx(2 / 5)


def test_judge_agreement_with_a_constant_judge() -> None:
    result = judge_agreement([3.0, 3.0], [3.0, 3.0], [5, 4], [1, 2])
    assert result["judge_accuracy"] is None and result["judge_accuracy_with_ties"] == 0.0
    assert result["judge_spearman"] is None and result["judge_kendall"] is None


def test_score_distribution_by_hand() -> None:
    result = score_distribution([0.0, 1.2, 4.6, 5.0, None])
    assert result["mean"] == pytest.approx(2.7) and result["share_5"] == 0.5 and result["share_1"] == 0.25
    assert score_distribution([]) == {}


def test_mean_interval_by_hand_and_against_scipy_bootstrap() -> None:
    from scipy.stats import bootstrap

    constant = mean_interval([3.0] * 7)
    assert (constant.mean, constant.low, constant.high) == (3.0, 3.0, 3.0)
    assert all(math.isnan(v) for v in (mean_interval([]).mean, mean_interval([]).low, mean_interval([]).high))
    # two prompts scored 1 and 3: a resample of two prompts has mean 1, 2 or 3 (probabilities 1/4, 1/2, 1/4), so the
    # 95% percentile interval runs from 1 to 3
    pair = mean_interval([1.0, 3.0], num_bootstrap=4000, seed=1)
    assert (pair.mean, pair.low, pair.high) == (2.0, 1.0, 3.0)
    values = np.random.default_rng(5).normal(3.0, 1.0, size=60)
    ours = mean_interval(values, num_bootstrap=20000, confidence=0.9, seed=2)
    reference = bootstrap((values,), np.mean, n_resamples=20000, confidence_level=0.9, method="percentile", rng=7)
    assert ours.mean == pytest.approx(values.mean())
    assert [ours.low, ours.high] == pytest.approx(
        [reference.confidence_interval.low, reference.confidence_interval.high], abs=0.02
    )
    with pytest.raises(ValueError, match="flat sequence"):
        mean_interval([[1.0, 2.0]])
