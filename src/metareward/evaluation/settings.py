"""The `evaluation` group's settings, and which evaluator compares answers: a component of
`conf/evaluation/evaluator/` (`evaluation/evaluator=<name>`), checked and built before any model loads (building one
is cheap: see `evaluators`), then attached to the run's generation backend when the first evaluation runs. Nothing
here names the evaluator classes: a new one is a class plus a YAML file in that folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metareward.evaluation.evaluators import EvaluatorSettingsError, ModelEvaluator, PreferenceEvaluator
from metareward.evaluation.runner import ArenaSettings
from metareward.generation.sampler import SamplingSettings
from metareward.schema.components import built_component
from metareward.schema.rules import COUNT, NON_NEGATIVE, Group, Number, setting

KEY = "evaluation.evaluator"
# The win-rate evaluation's figures that dpo.choose_pass_by may choose an iteration's pass by (higher is better).
PASS_FIGURES = ("seed_judge_score", "lc_win_rate", "win_rate")


@dataclass(frozen=True)
class JudgeQualitySettings:
    """The `evaluation.judge_quality` group: judge agreement with labelled pairs (|s_good - s_poor| <= tie_tolerance
    counts as a judge tie)."""

    num_pairs: int = setting("num_pairs", COUNT)
    batch_size: int = setting("batch_size", COUNT)
    max_prompt_tokens: int = setting("max_prompt_tokens", COUNT)
    tie_tolerance: float = setting("tie_tolerance", NON_NEGATIVE)


@dataclass(frozen=True)
class EvaluationSettings:
    """The `evaluation` group's values (the evaluation callbacks read them through conf/callbacks/default.yaml):
    the held-out answers' sampling (evaluation.temperature, top_p, max_new_tokens), the arena, the judge quality."""

    num_prompts: int = setting("num_prompts", COUNT)
    sampling: SamplingSettings = setting("", Group(SamplingSettings))
    batch_size: int = setting("batch_size", COUNT)
    max_prompt_tokens: int = setting("max_prompt_tokens", COUNT)
    arena: ArenaSettings = setting("arena", Group(ArenaSettings))
    judge_quality: JudgeQualitySettings = setting("judge_quality", Group(JudgeQualitySettings))
    num_table_rows: int = setting("dashboard.num_table_rows", Number(int, 0))


def checked_evaluator(node: Any) -> tuple[PreferenceEvaluator | None, list[str]]:
    """The evaluator `node` configures, built from its parameters alone (None when it cannot be), and every problem,
    one sentence each: a `_target_` that does not import, parameters the class does not take, what its constructor
    refuses (each problem of an `EvaluatorSettingsError` named by its key), a class that is no PreferenceEvaluator."""
    return built_component(node, KEY, PreferenceEvaluator, EvaluatorSettingsError)


def build_evaluator(node: Any) -> PreferenceEvaluator:
    """The evaluator `node` configures, not yet attached to a backend; raises ValueError listing every problem."""
    built, problems = checked_evaluator(node)
    if built is None:
        raise ValueError("; ".join(problems) + ".")
    return built


def evaluator_checkpoint(node: Any) -> Path | None:
    """The local directory a model evaluator (evaluation/evaluator=model) will load, to be checked as a checkpoint
    before any model loads; None for a hub id or another evaluator."""
    built, _ = checked_evaluator(node)
    if not isinstance(built, ModelEvaluator):
        return None
    path = Path(str(built.path)).expanduser()
    return path if path.is_dir() else None
