"""CREAM's reward of a response, worked by hand: the DPO implicit reward against the model the policy was trained
from, or the length-normalised log-likelihood where there is none."""

from __future__ import annotations

import pytest

from metareward.core.implicit_reward import Likelihood, implicit_rewards

# Three answers to one prompt. Under pi_t they have log-likelihoods -12, -20 and -9 over 4, 10 and 3 tokens; under
# pi_t-1, -15, -18 and -9.
NOW = {"a": Likelihood(-12.0, 4), "b": Likelihood(-20.0, 10), "c": Likelihood(-9.0, 3)}
BEFORE = {"a": Likelihood(-15.0, 4), "b": Likelihood(-18.0, 10), "c": Likelihood(-9.0, 3)}


def test_against_a_reference_the_reward_is_the_log_ratio() -> None:
    # -12 - (-15) = 3; -20 - (-18) = -2; -9 - (-9) = 0: a > c > b, where the raw likelihoods rank c > a > b.
    assert implicit_rewards(NOW, BEFORE) == {"a": 3.0, "b": -2.0, "c": 0.0}


def test_without_a_reference_the_reward_is_the_mean_log_likelihood_per_token() -> None:
    # -12 / 4 = -3; -20 / 10 = -2; -9 / 3 = -3: b ranks first although its summed likelihood is the lowest.
    assert implicit_rewards(NOW, None) == {"a": -3.0, "b": -2.0, "c": -3.0}


def test_answers_the_reference_did_not_score_and_empty_answers_have_no_reward() -> None:
    assert implicit_rewards(NOW, {"a": BEFORE["a"]}) == {"a": 3.0}
    assert implicit_rewards({"e": Likelihood(0.0, 0), "a": NOW["a"]}, None) == {"a": pytest.approx(-3.0)}
