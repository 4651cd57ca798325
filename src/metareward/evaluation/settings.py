"""Which evaluator compares answers: a component of `conf/evaluation/evaluator/` (`evaluation/evaluator=<name>`),
checked and built before any model loads (building one is cheap: see `evaluators`), then attached to the run's
generation backend when the first evaluation runs. Nothing here names the evaluator classes: a new one is a class
plus a YAML file in that folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from metareward.config.components import Component, checked_build, node_component
from metareward.evaluation.evaluators import EvaluatorSettingsError, ModelEvaluator, PreferenceEvaluator

KEY = "evaluation.evaluator"
GROUP = "evaluation/evaluator"
# The old spelling's key (evaluation.evaluator.kind=<name>): conf/evaluation/default.yaml keeps it, null, only so that
# such an override is refused with the new spelling instead of by Hydra; it is never a parameter of the evaluator.
OLD_NAME = "kind"


def evaluator_component(node: Any, problems: list[str]) -> Component:
    """The evaluator node (`evaluation.evaluator`, a mapping) as a component; what makes it unreadable, the old
    spelling included, goes to `problems` and an empty component comes back."""
    if isinstance(node, Mapping) and not isinstance(node, DictConfig):
        node = OmegaConf.create(dict(node))
    old = node.get(OLD_NAME) if isinstance(node, DictConfig) else None
    if old is not None:
        problems.append(_old_spelling(old))
        return Component(KEY, "", {})
    found = node_component(node, KEY, problems)
    return replace(found, params={k: v for k, v in found.params.items() if k != OLD_NAME})


def _old_spelling(name: Any) -> str:
    where = f"(a YAML file in conf/{GROUP}/)"
    if isinstance(name, str):
        return f"{KEY}.{OLD_NAME}={name!r} is the old spelling: select the evaluator with {GROUP}={name} {where}"
    return f"{KEY}.{OLD_NAME}={name!r} is not a name; select the evaluator with {GROUP}=<name> {where}"


def checked_evaluator(node: Any, problems: list[str]) -> PreferenceEvaluator | None:
    """The evaluator `node` configures, built from its parameters alone, or None with every problem added to
    `problems`, one sentence each: a `_target_` that does not import, parameters the class does not take, what its
    constructor refuses (each problem of an `EvaluatorSettingsError` named by its key), a class that is no
    PreferenceEvaluator."""
    return checked_build(evaluator_component(node, problems), problems, PreferenceEvaluator, EvaluatorSettingsError)


def evaluator_problems(node: Any) -> list[str]:
    """Every problem of the evaluator `node` configures (see `checked_evaluator`)."""
    found: list[str] = []
    checked_evaluator(node, found)
    return found


def build_evaluator(node: Any) -> PreferenceEvaluator:
    """The evaluator `node` configures, not yet attached to a backend; raises ValueError listing every problem."""
    problems: list[str] = []
    built = checked_evaluator(node, problems)
    if built is None:
        raise ValueError("; ".join(problems) + ".")
    return built


def evaluator_checkpoint(node: Any) -> Path | None:
    """The local directory a model evaluator (evaluation/evaluator=model) will load, to be checked as a checkpoint
    before any model loads; None for a hub id or another evaluator."""
    built = checked_evaluator(node, [])
    if not isinstance(built, ModelEvaluator):
        return None
    path = Path(str(built.path)).expanduser()
    return path if path.is_dir() else None
