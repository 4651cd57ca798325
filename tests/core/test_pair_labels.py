"""Soft preference labels (core.pair_labels): the win probability of two score distributions, worked by hand, and the
labellings that turn an iteration's judgments into one label per actor pair."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from metareward.core.pair_labels import (
    HardLabels,
    JudgeProbabilityLabels,
    LabelEvidence,
    ScoreDistribution,
    win_probability,
)
from metareward.storage.records import PairRecord

SCALE = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)


def test_hand_worked_win_probability_of_two_mean_scores() -> None:
    # The chosen response has two judgments: a written "Score: 4" and a probability read with P(2) = P(3) = 0.5, so
    # its mean score is (4 + 2) / 2 = 3 or (4 + 3) / 2 = 3.5, each w.p. 0.5. The rejected one has a single written 3.
    chosen = ScoreDistribution.mean_of(
        [ScoreDistribution.point(4), ScoreDistribution.over_scale(SCALE, [0, 0, 0.5, 0.5, 0, 0])]
    )
    assert dict(zip(chosen.values, chosen.weights)) == pytest.approx({3.0: 0.5, 3.5: 0.5})
    rejected = ScoreDistribution.point(3)
    # P(mean_c > 3) = 0.5; P(mean_c = 3) = 0.5, counted half: 0.5 + 0.25. (One judgment drawn at random, the old
    # label, gave 0.625: P(4) = 0.5 plus half of P(3) = 0.25.)
    assert win_probability(chosen, rejected) == pytest.approx(0.75)
    assert win_probability(rejected, chosen) == pytest.approx(0.25)
    assert chosen.mean == pytest.approx(3.25)


@pytest.mark.parametrize(("judgments", "expected"), [(1, 0.60), (3, 0.68256), (11, 0.825622133638228)])
def test_the_label_of_n_judgments_is_the_win_probability_of_their_means(judgments: int, expected: float) -> None:
    # Every judgment of the chosen answer: P(4) = 0.6, P(3) = 0.4; of the rejected one: P(3) = 0.6, P(4) = 0.4. A
    # mean of N is 3 + Binomial(N, p) / N, so q = P(B_c > B_r) + P(B_c = B_r) / 2 with B_c ~ Bin(N, 0.6) and
    # B_r ~ Bin(N, 0.4). N = 1: 0.36 + 0.48 / 2 = 0.60. N = 3: pmfs (0.064, 0.288, 0.432, 0.216) and (0.216, 0.432,
    # 0.288, 0.064), which give 0.68256; N = 11 from scipy.stats.binom: 0.8256. One judgment's mixture stays at 0.60.
    from scipy.stats import binom

    one_chosen = ScoreDistribution.over_scale(SCALE, [0, 0, 0, 0.4, 0.6, 0])
    one_rejected = ScoreDistribution.over_scale(SCALE, [0, 0, 0, 0.6, 0.4, 0])
    chosen = ScoreDistribution.mean_of([one_chosen] * judgments)
    rejected = ScoreDistribution.mean_of([one_rejected] * judgments)
    assert win_probability(chosen, rejected) == pytest.approx(expected)
    pc, pr = binom.pmf(range(judgments + 1), judgments, 0.6), binom.pmf(range(judgments + 1), judgments, 0.4)
    reference = sum(
        pc[i] * pr[j] * (1.0 if i > j else 0.5 if i == j else 0.0)
        for i, j in itertools.product(range(judgments + 1), repeat=2)
    )
    assert win_probability(chosen, rejected) == pytest.approx(reference)


def test_two_spread_distributions_by_enumeration_of_the_grid() -> None:
    # chosen: P(3) = 0.6, P(4) = 0.4; rejected: P(2) = 0.2, P(3) = 0.8.
    # 3 vs 2: 0.12 win; 3 vs 3: 0.48 tie; 4 vs 2: 0.08 win; 4 vs 3: 0.32 win -> 0.12 + 0.08 + 0.32 + 0.24 = 0.76.
    chosen = ScoreDistribution.over_scale(SCALE, [0, 0, 0, 0.6, 0.4, 0])
    rejected = ScoreDistribution.over_scale(SCALE, [0, 0, 0.2, 0.8, 0, 0])
    assert win_probability(chosen, rejected) == pytest.approx(0.76)


@pytest.mark.parametrize("seed", range(5))
def test_win_probabilities_of_the_two_orders_sum_to_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = ScoreDistribution.over_scale(SCALE, rng.random(6))
    b = ScoreDistribution.mean_of([ScoreDistribution.over_scale(SCALE, rng.random(6)), ScoreDistribution.point(2)])
    assert win_probability(a, b) + win_probability(b, a) == pytest.approx(1.0)
    assert win_probability(a, a) == pytest.approx(0.5)  # a response against itself is a coin toss


def test_over_scale_renormalises_and_refuses_what_is_no_distribution() -> None:
    assert ScoreDistribution.over_scale((1.0, 2.0), [1.0, 3.0]).weights == (0.25, 0.75)
    for bad in ([0.5], [0.0, 0.0], [-0.1, 1.1]):
        with pytest.raises(ValueError, match="need one >= 0 per score"):
            ScoreDistribution.over_scale((1.0, 2.0), bad)
    with pytest.raises(ValueError, match="at least one"):
        ScoreDistribution.mean_of([])


def _pair(chosen: int, rejected: int) -> PairRecord:
    return PairRecord("actor", "p", "question", f"answer {chosen}", f"answer {rejected}", None, None, None, None,
                      chosen_index=chosen, rejected_index=rejected)  # fmt: skip


def test_labellings_give_one_label_per_pair() -> None:
    evidence = LabelEvidence(
        {
            ("p", 0): ScoreDistribution.over_scale(SCALE, [0, 0, 0, 0.6, 0.4, 0]),
            ("p", 1): ScoreDistribution.over_scale(SCALE, [0, 0, 0.2, 0.8, 0, 0]),
            ("p", 2): ScoreDistribution.point(5),
        }
    )
    pairs = [_pair(0, 1), _pair(2, 0), _pair(0, 3)]  # response 3 has no valid judgment: its pair stays hard
    assert HardLabels()(pairs, evidence) == [None, None, None]
    labels = JudgeProbabilityLabels()(pairs, evidence)
    assert labels[0] == pytest.approx(0.76) and labels[1] == pytest.approx(1.0) and labels[2] is None


def test_a_written_score_gives_a_hard_label_exactly_when_the_scores_differ() -> None:
    for a, b in itertools.product(range(6), repeat=2):
        label = win_probability(ScoreDistribution.point(a), ScoreDistribution.point(b))
        assert label == (1.0 if a > b else 0.5 if a == b else 0.0)
