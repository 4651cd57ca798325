"""CREAM's reward of a response: the DPO implicit reward of the model that wrote it (Wang et al. 2024, arXiv
2410.12735; the authors' rewarding.py).

A model pi_t trained by DPO from pi_t-1 rewards a response y to a prompt x with

    r_t(x, y) = beta * (log pi_t(y | x) - log pi_t-1(y | x))

(Rafailov et al. 2023, Sec. 5), log pi(y | x) being the summed log-probability of y's tokens. Only the order of a
prompt's responses is used (best and worst make the pair; their ranks make CREAM's consistency), and a positive beta scales
every reward alike, so it is left out. A model with no model before it (the first of a run) ranks by its
length-normalised log-likelihood, log pi_t(y | x) / |y|, as the authors' code does for the model it has no
reference for.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True)
class Likelihood:
    """log pi(y | x) summed over y's `tokens` tokens (the end-of-turn token included where the answer ended)."""

    logp: float
    tokens: int


def implicit_rewards(policy: Mapping[Key, Likelihood], reference: Mapping[Key, Likelihood] | None) -> dict[Key, float]:
    """Each response's reward under `policy`: log pi_t - log pi_t-1 against the `reference` model it was trained
    from, or log pi_t / |y| where there is none (None). A response the reference did not score, or one without
    tokens, has no reward (left out)."""
    if reference is None:
        return {key: found.logp / found.tokens for key, found in policy.items() if found.tokens > 0}
    return {key: found.logp - reference[key].logp for key, found in policy.items() if key in reference}
