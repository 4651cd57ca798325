"""Where each actor pair's rejected answer comes from: a choice of `pairs/rejected` (conf/pairs/rejected/).

- `OwnRejections` (the default, the papers): both sides are the current model M_t's answers to the prompt.
- `AnchoredRejections` (Temporal Self-Rewarding Language Models, arXiv 2508.06026, 2025): the rejected side is one of
  the seed model M0's answers to the same prompt, judged by the current judge; the chosen side stays M_t's. As the
  actor improves, its own worst answers become good answers too, and a pair of two of them teaches little; M0's
  answers stay a fixed floor to push away from.

The engine asks a choice for its `anchor_role`: the role whose answers it generates and judges beside M_t's (None:
no anchors), and how many per prompt. Those stages are `engine.variants.AnchoredAnswers`'s, chosen there by this flag.
"""

from __future__ import annotations

from metareward.model.roles import SEED_ROLE


class Rejections:
    """Base class of a `pairs/rejected` choice; a new one is a subclass and a YAML file naming it with `_target_`."""

    anchor_role: str | None = None
    anchors_per_prompt: int | None = None  # None: as many as the actor's actor.num_responses

    def anchors(self, num_responses: int) -> int:
        """How many anchor answers to make per prompt (0 when there are no anchors)."""
        if self.anchor_role is None:
            return 0
        return self.anchors_per_prompt or num_responses


class OwnRejections(Rejections):
    """Both sides of every actor pair are the current model's answers (Meta-Rewarding, Self-Rewarding)."""


class AnchoredRejections(Rejections):
    """The rejected side from the seed model M0's answers (its adapters off), the chosen side from M_t's.

    `num_responses` anchor answers per prompt (default: actor.num_responses), each judged like M_t's answers; the
    pair takes the strategy's chosen pick of M_t's answers and its rejected pick of the anchors (see
    `core.actor_pairs.select_anchored`), and is dropped (`anchor_not_below`) where M_t's pick does not score higher.
    """

    anchor_role = SEED_ROLE

    def __init__(self, num_responses: int | None = None) -> None:
        if num_responses is not None and (isinstance(num_responses, bool) or not isinstance(num_responses, int)):
            raise ValueError(
                f"num_responses must be a whole number of anchor answers per prompt, got {num_responses!r}"
            )
        if num_responses is not None and num_responses < 1:
            raise ValueError(f"num_responses={num_responses} must be at least 1 (or null: actor.num_responses)")
        self.anchors_per_prompt = num_responses
