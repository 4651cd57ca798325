"""Typed settings of the data engine, read from the config once (each field by the rule beside it) and checked
before any model is loaded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from metareward.core.actor_pairs import ACTOR_PAIR_STRATEGIES, RHO
from metareward.core.pair_labels import HardLabels, PairLabels
from metareward.core.prompts import ADDITIVE_FIVE_POINT, JudgePrompt, JudgePromptError
from metareward.engine.ranking import ActorRanking, PointwiseRanking, RankingError
from metareward.engine.rejections import OwnRejections, Rejections
from metareward.generation.sampler import RoleSettings
from metareward.schema.components import Built
from metareward.schema.rules import COUNT, FLAG, NON_NEGATIVE, Choice, Group, Listed, Number, setting

READ_MODES = ("parse", "probability", "hybrid")
# A response or judgment that hit its token limit: left out of pairs, or trained without an end token (engine.pairs).
UNFINISHED_POLICIES = ("drop", "keep")
T = TypeVar("T")


def scheduled(values: Sequence[T] | None, iteration: int, default: T) -> T:
    """The value for a 1-based iteration from an optional list; past its end the last entry holds."""
    if not values:
        return default
    return values[min(iteration, len(values)) - 1]


@dataclass(frozen=True)
class EngineSettings:
    """The data engine's settings. No defaults here: the config (conf/) is their one source, read by
    `config.build_settings`; code that needs settings without a run composes that config (as the benchmarks do).
    Each field's key is relative to the config's root."""

    seed: int = setting("seed", Number(int, 0))
    prompts_per_iteration: int = setting("data.prompts_per_iteration", COUNT)
    num_responses: int = setting("actor.num_responses", Number(int, 2, reason="a pair needs two responses"))
    num_judgments: int = setting("judge.num_judgments", COUNT)
    actor: RoleSettings = setting("actor", Group(RoleSettings))
    judge: RoleSettings = setting("judge", Group(RoleSettings))
    meta_judge: RoleSettings = setting("meta_judge", Group(RoleSettings))
    drop_duplicate_responses: bool = setting("actor.drop_duplicates", FLAG)
    # judge/prompt: both judging roles' templates, final lines and score scale
    judge_prompt: JudgePrompt = setting("judge.prompt", Built(JudgePrompt, ADDITIVE_FIVE_POINT, JudgePromptError))
    # judge/ranking: how the actor's responses are ranked for actor pairs (engine.ranking)
    ranking: ActorRanking = setting("judge.ranking", Built(ActorRanking, PointwiseRanking(), RankingError))
    score_mode: str = setting("judge.score_mode", Choice(READ_MODES))
    verdict_mode: str = setting("meta_judge.verdict_mode", Choice(READ_MODES))
    calibrate_position: bool = setting("meta_judge.calibrate_position", FLAG)
    pair_strategy: str = setting("pairs.strategy", Choice(tuple(sorted(ACTOR_PAIR_STRATEGIES))))
    rho: float = setting("pairs.rho", RHO)
    rho_schedule: tuple[float, ...] | None = setting("pairs.rho_schedule", Listed(RHO))
    # per iteration, the longest chosen answer an actor pair may have, in characters (null: no cap)
    max_chosen_chars_schedule: tuple[int | None, ...] | None = setting(
        "pairs.max_chosen_chars_schedule", Listed(Number(int, 1, nullable=True))
    )
    # pairs/label: hard pairs, or soft labels (core.pair_labels)
    pair_labels: PairLabels = setting("pairs.label", Built(PairLabels, HardLabels()))
    # pairs/rejected: the model's own answers, or anchors (engine.rejections)
    rejections: Rejections = setting("pairs.rejected", Built(Rejections, OwnRejections()))
    judge_training_iterations: tuple[int, ...] = setting(
        "schedule.judge_training_iterations",
        Listed(Number(int, 1), null_fix="write [] to train the judge in no iteration"),
    )
    max_judgment_chars: int | None = setting("meta_judge.max_judgment_chars", Number(int, 1, nullable=True))
    max_judgment_chars_schedule: tuple[int, ...] | None = setting(
        "meta_judge.max_judgment_chars_schedule", Listed(Number(int))
    )
    elo_l2: float = setting("meta_judge.elo_l2", NON_NEGATIVE)
    max_prompt_tokens: int  # prompt + completion tokens DPO takes: the longest prompt the engine may send (dpo.*)
    unfinished: str = setting("pairs.unfinished", Choice(UNFINISHED_POLICIES))
    progress: bool = setting("progress", FLAG)

    def rho_for(self, iteration: int) -> float:
        return float(scheduled(self.rho_schedule, iteration, self.rho))

    def chosen_cap_for(self, iteration: int) -> int | None:
        """The iteration's cap on a chosen answer's characters (None: no cap); past the schedule's end its last
        entry holds."""
        return scheduled(self.max_chosen_chars_schedule, iteration, None)

    def judgment_cap_for(self, iteration: int) -> int | None:
        if self.max_judgment_chars_schedule:
            return int(scheduled(self.max_judgment_chars_schedule, iteration, 0))
        return self.max_judgment_chars

    def trains_judge(self, iteration: int) -> bool:
        return iteration in self.judge_training_iterations

    def kept_roles(self) -> tuple[str, ...]:
        """The roles whose weights each iteration keeps for later ones (`engine.weights_history`): the judge for
        CREAM's previous judge, the actor for the implicit reward's earlier models."""
        judge = self.pair_labels.reads_previous_judge and self.ranking.reads_judge
        return (("judge",) if judge else ()) + (("actor",) if self.ranking.keeps_actor_history else ())

    def problems(self) -> list[str]:
        """The rules that tie two settings together, as sentences naming the keys (each field's own rule is stated
        beside it)."""
        found = []
        if self.judge_training_iterations and self.num_judgments < 2:
            found.append(
                f"judge.num_judgments={self.num_judgments} must be at least 2 when the meta-judge runs "
                f"(schedule.judge_training_iterations={list(self.judge_training_iterations)})"
            )
        ranking = type(self.ranking).__name__
        if self.rejections.anchor_role is not None and not isinstance(self.ranking, PointwiseRanking):
            found.append(
                "pairs/rejected=seed scores the anchors by their mean judge score, which is not on the scale of "
                f"the scores of judge/ranking ({ranking}): use one of the two (or judge/ranking=pointwise)"
            )
        if self.pair_labels.reads_judge_probabilities and not self.ranking.reads_judge:
            found.append(
                "pairs/label=judge_probability labels a pair by the judge's scores, but judge/ranking "
                f"({ranking}) chooses pairs without the judge: use one of the two"
            )
        return found
