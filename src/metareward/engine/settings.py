"""Typed settings of the data engine, built from the config once and validated before any model is loaded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from metareward.core.actor_pairs import ACTOR_PAIR_STRATEGIES
from metareward.core.pair_labels import PairLabels
from metareward.core.prompts import JudgePrompt
from metareward.engine.ranking import ActorRanking, PointwiseRanking
from metareward.engine.rejections import Rejections
from metareward.generation.sampler import RoleSettings

READ_MODES = ("parse", "probability", "hybrid")
# A response or judgment that hit its token limit: left out of pairs, or trained without an end token (engine.pairs).
UNFINISHED_POLICIES = ("drop", "keep")


def scheduled(values: Sequence[float] | None, iteration: int, default: float) -> float:
    """The value for a 1-based iteration from an optional list; past its end the last entry holds."""
    if not values:
        return default
    return float(values[min(iteration, len(values)) - 1])


@dataclass(frozen=True)
class EngineSettings:
    """The data engine's settings. No defaults here: the config (conf/) is their one source, read by
    `config.build_settings`; code that needs settings without a run composes that config (as the benchmarks do)."""

    seed: int
    prompts_per_iteration: int
    num_responses: int
    num_judgments: int
    actor: RoleSettings
    judge: RoleSettings
    meta_judge: RoleSettings
    drop_duplicate_responses: bool
    judge_prompt: JudgePrompt  # judge/prompt: both judging roles' templates, final lines and score scale
    ranking: ActorRanking  # judge/ranking: how the actor's responses are ranked for actor pairs (engine.ranking)
    score_mode: str
    verdict_mode: str
    calibrate_position: bool
    pair_strategy: str
    rho: float
    rho_schedule: tuple[float, ...] | None
    pair_labels: PairLabels  # pairs/label: hard pairs, or soft labels (core.pair_labels)
    rejections: Rejections  # pairs/rejected: the model's own answers, or anchors (engine.rejections)
    judge_training_iterations: tuple[int, ...]
    max_judgment_chars: int | None
    max_judgment_chars_schedule: tuple[int, ...] | None
    elo_l2: float
    max_prompt_tokens: int  # prompt + completion tokens DPO takes: the longest prompt the engine may send
    unfinished: str
    progress: bool

    def rho_for(self, iteration: int) -> float:
        return scheduled(self.rho_schedule, iteration, self.rho)

    def judgment_cap_for(self, iteration: int) -> int | None:
        if self.max_judgment_chars_schedule:
            return int(scheduled(self.max_judgment_chars_schedule, iteration, 0))
        return self.max_judgment_chars

    def trains_judge(self, iteration: int) -> bool:
        return iteration in self.judge_training_iterations

    def problems(self) -> list[str]:
        """Every invalid value, as plain sentences naming the config key."""
        found = []
        if self.prompts_per_iteration < 1:
            found.append(f"data.prompts_per_iteration={self.prompts_per_iteration} must be at least 1")
        if self.num_responses < 2:
            found.append(f"actor.num_responses={self.num_responses} must be at least 2 to form a pair")
        if self.num_judgments < 1:
            found.append(f"judge.num_judgments={self.num_judgments} must be at least 1")
        if self.judge_training_iterations and self.num_judgments < 2:
            found.append(
                f"judge.num_judgments={self.num_judgments} must be at least 2 when the meta-judge runs "
                f"(schedule.judge_training_iterations={list(self.judge_training_iterations)})"
            )
        for key, mode in (("judge.score_mode", self.score_mode), ("meta_judge.verdict_mode", self.verdict_mode)):
            if mode not in READ_MODES:
                found.append(f"{key}={mode!r} is not one of {list(READ_MODES)}")
        if self.pair_strategy not in ACTOR_PAIR_STRATEGIES:
            found.append(f"pairs.strategy={self.pair_strategy!r} is not one of {sorted(ACTOR_PAIR_STRATEGIES)}")
        # Above 0.5 the length-control tiers overlap and a pair's chosen answer could score below its rejected one.
        scheduled_rhos = [(f"pairs.rho_schedule entry {r}", r) for r in self.rho_schedule or ()]
        named = [(f"pairs.rho={self.rho}", self.rho), *scheduled_rhos]
        for name, rho in named:
            if not 0.0 <= rho <= 0.5:
                found.append(
                    f"{name} must be in [0, 0.5]: above 0.5 the top and bottom score tiers overlap, so the "
                    "chosen answer could score below the rejected one (the papers use 0 to 0.4)"
                )
        for name, role in (("actor", self.actor), ("judge", self.judge), ("meta_judge", self.meta_judge)):
            found.extend(_role_problems(name, role))
        if any(i < 1 for i in self.judge_training_iterations):
            found.append("schedule.judge_training_iterations holds 1-based iteration numbers (1, 2, ...)")
        if self.unfinished not in UNFINISHED_POLICIES:
            found.append(f"pairs.unfinished={self.unfinished!r} is not one of {list(UNFINISHED_POLICIES)}")
        if self.rejections.anchor_role is not None and not isinstance(self.ranking, PointwiseRanking):
            found.append(
                "pairs/rejected=seed scores the anchors by their mean judge score, which is not on the scale of "
                "judge/ranking=pairwise's scores: use one of the two (or judge/ranking=pointwise)"
            )
        if self.elo_l2 < 0:
            found.append(f"meta_judge.elo_l2={self.elo_l2} must be >= 0")
        return found


def _role_problems(name: str, role: RoleSettings) -> list[str]:
    # Sampling values are checked by SamplingSettings itself (config._role reports them); the batch size is not.
    return [f"{name}.batch_size={role.batch_size} must be at least 1"] if role.batch_size < 1 else []
