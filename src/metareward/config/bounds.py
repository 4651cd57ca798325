"""The type and range of every numeric setting and the fit of every schedule to `num_iterations`, read from the raw
config so that `num_iterations=two` is reported by its key, together with every other problem, instead of stopping
the first `int(...)` that meets it.

A key whose range is checked where its value is used (the typed settings' `problems()`) is checked here for its type
only (`checked_elsewhere`), so no problem is reported twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

_ABSENT = object()


@dataclass(frozen=True)
class Number:
    """An int or float setting in [low, high] (an end is open when its flag says so); None for no bound."""

    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False
    checked_elsewhere: bool = False

    def type_problem(self, key: str, value: Any) -> str | None:
        if value is None:
            return None if self.nullable else f"{key} is null; it needs a number"
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.kind is int and number and (isinstance(value, int) or float(value).is_integer()):
            return None
        if self.kind is float and number:
            return None
        what = "a whole number" if self.kind is int else "a number"
        return f"{key}={value!r} is not {what}; set {key} to {what}" + (" or null" if self.nullable else "")

    def range_problem(self, key: str, value: Any) -> str | None:
        if value is None or self.checked_elsewhere:
            return None
        value = float(value)
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.high_open else value <= self.high)
        if low_ok and high_ok and not math.isnan(value):
            return None
        return f"{key}={_shown(value)} must be {self.describe()}"

    def describe(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {_shown(self.low)}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {_shown(self.high)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{_shown(self.low)}, {_shown(self.high)}{right}"


def _shown(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)


COUNT = Number(int, 1)
POSITIVE = Number(float, 0, low_open=True)
NON_NEGATIVE = Number(float, 0)
PROBABILITY_MASS = Number(float, 0, 1, low_open=True)  # top_p
ELSEWHERE_INT = Number(int, checked_elsewhere=True)
ELSEWHERE_FLOAT = Number(float, checked_elsewhere=True)


def _role(name: str) -> dict[str, Number]:
    # Sampling values are range-checked by SamplingSettings and batch sizes by the engine settings.
    return {
        f"{name}.{key}": rule
        for key, rule in (
            ("temperature", ELSEWHERE_FLOAT),
            ("top_p", ELSEWHERE_FLOAT),
            ("max_new_tokens", ELSEWHERE_INT),
            ("batch_size", ELSEWHERE_INT),
        )
    }


NUMBERS: dict[str, Number] = {
    "num_iterations": ELSEWHERE_INT,
    "seed": Number(int, 0),
    "data.prompts_per_iteration": ELSEWHERE_INT,
    "data.max_prompt_chars": Number(int, 1, nullable=True),
    "actor.num_responses": ELSEWHERE_INT,
    "judge.num_judgments": ELSEWHERE_INT,
    **_role("actor"),
    **_role("judge"),
    **_role("meta_judge"),
    "meta_judge.max_judgment_chars": Number(int, 1, nullable=True),
    "meta_judge.elo_l2": ELSEWHERE_FLOAT,
    "pairs.rho": ELSEWHERE_FLOAT,
    "dpo.beta": ELSEWHERE_FLOAT,
    "dpo.lr": ELSEWHERE_FLOAT,
    "dpo.min_lr": ELSEWHERE_FLOAT,
    "dpo.batch_size": ELSEWHERE_INT,
    "dpo.epochs_per_iteration": ELSEWHERE_INT,
    # Smoothing 0.5 makes the conservative DPO loss ignore which answer was chosen (Mitchell 2023, cDPO).
    "dpo.label_smoothing": Number(float, 0, 0.5, high_open=True),
    "dpo.nll_weight": NON_NEGATIVE,
    "dpo.weight_decay": NON_NEGATIVE,
    "dpo.warmup_steps": Number(int, 0),
    "dpo.max_prompt_tokens": COUNT,
    "dpo.max_completion_tokens": COUNT,
    "model.adapters.r": ELSEWHERE_INT,
    "model.adapters.alpha": POSITIVE,
    "model.adapters.dropout": ELSEWHERE_FLOAT,
    "evaluation.num_prompts": COUNT,
    "evaluation.max_new_tokens": COUNT,
    "evaluation.temperature": NON_NEGATIVE,
    "evaluation.top_p": PROBABILITY_MASS,
    "evaluation.batch_size": COUNT,
    "evaluation.max_prompt_tokens": COUNT,
    # The evaluator's (conf/evaluation/evaluator/): checked here when the selected one has the key.
    "evaluation.evaluator.max_tokens": COUNT,
    "evaluation.evaluator.batch_size": COUNT,
    "evaluation.evaluator.top_logprobs": Number(int, 0, 20),  # the OpenAI API allows 0 to 20
    "evaluation.evaluator.timeout_s": POSITIVE,
    "evaluation.evaluator.max_prompt_tokens": COUNT,
    "evaluation.arena.tie_margin": Number(float, 0, 0.5, high_open=True),
    "evaluation.arena.num_bootstrap": COUNT,
    "evaluation.arena.confidence": Number(float, 0, 1, low_open=True, high_open=True),
    "evaluation.judge_quality.num_pairs": COUNT,
    "evaluation.judge_quality.batch_size": COUNT,
    "evaluation.judge_quality.max_prompt_tokens": COUNT,
    "evaluation.judge_quality.tie_tolerance": NON_NEGATIVE,
    "evaluation.dashboard.num_table_rows": Number(int, 0),
    "warm_start.epochs": ELSEWHERE_INT,
    "warm_start.lr": ELSEWHERE_FLOAT,
    "warm_start.batch_size": ELSEWHERE_INT,
    "warm_start.max_steps": Number(int, nullable=True, checked_elsewhere=True),
    "warm_start.weight_decay": NON_NEGATIVE,
    "warm_start.max_grad_norm": Number(float, 0, low_open=True, nullable=True),
    "warm_start.max_prompt_tokens": COUNT,
    "warm_start.max_completion_tokens": COUNT,
}


# The ranges the typed settings check (their `problems()`), used only when those settings cannot be built.
ELSEWHERE_RANGES: dict[str, Number] = {
    "num_iterations": COUNT,
    "data.prompts_per_iteration": COUNT,
    "actor.num_responses": Number(int, 2),
    "judge.num_judgments": COUNT,
    **{
        f"{role}.{key}": rule
        for role in ("actor", "judge", "meta_judge")
        for key, rule in (
            ("temperature", NON_NEGATIVE),
            ("top_p", PROBABILITY_MASS),
            ("max_new_tokens", COUNT),
            ("batch_size", COUNT),
        )
    },
    "meta_judge.elo_l2": NON_NEGATIVE,
    "pairs.rho": Number(float, 0, 0.5),
    "dpo.beta": POSITIVE,
    "dpo.lr": POSITIVE,
    "dpo.min_lr": NON_NEGATIVE,
    "dpo.batch_size": COUNT,
    "dpo.epochs_per_iteration": COUNT,
    "model.adapters.r": COUNT,
    "model.adapters.dropout": Number(float, 0, 1, high_open=True),
    "warm_start.epochs": COUNT,
    "warm_start.lr": POSITIVE,
    "warm_start.batch_size": COUNT,
    "warm_start.max_steps": Number(int, 1, nullable=True),
}


def _select(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, default=_ABSENT)
    except OmegaConfBaseException:  # an interpolation that cannot resolve: reported by whoever reads it
        return _ABSENT


def number_problems(cfg: DictConfig) -> tuple[list[str], list[str]]:
    """(type problems, range problems) of every numeric setting present in `cfg`. When some value has the wrong
    type the typed settings cannot be built, so the ranges they would check are checked here too."""
    values = {key: _select(cfg, key) for key in NUMBERS}
    present = {key: value for key, value in values.items() if value is not _ABSENT}
    types = [p for key, value in present.items() if (p := NUMBERS[key].type_problem(key, value))]
    ranges = []
    for key, value in present.items():
        rule = NUMBERS[key]
        if types and rule.checked_elsewhere and rule.low is None and rule.high is None:
            rule = ELSEWHERE_RANGES.get(key, rule)
        if not rule.type_problem(key, value) and (problem := rule.range_problem(key, value)):
            ranges.append(problem)
    return types, ranges


def schedule_problems(cfg: DictConfig, num_iterations: Any) -> tuple[list[str], list[str]]:
    """(schedules that are not lists of numbers, schedules that do not fit `num_iterations`). Per-iteration lists
    may be shorter than the run (their last entry holds past their end) but not longer; iteration numbers must lie
    within 1..num_iterations."""
    shapes: list[str] = []
    lists = {key: _list(cfg, key, shapes) for key in SCHEDULES}
    if _select(cfg, "schedule.judge_training_iterations") is None:
        shapes.append("schedule.judge_training_iterations is null; write [] to train the judge in no iteration")
    for key, entries in lists.items():
        shapes += [p for p in (SCHEDULES[key].type_problem(f"{key} entry", e) for e in entries or ()) if p]
    fits = isinstance(num_iterations, int) and not isinstance(num_iterations, bool) and num_iterations >= 1
    if not fits:
        return shapes, []  # num_iterations itself is reported as a number problem
    found = []
    for key, entries in lists.items():
        if key == "schedule.judge_training_iterations":
            found += [
                f"schedule.judge_training_iterations names iteration {entry} but num_iterations={num_iterations}; "
                f"use numbers from 1 to {num_iterations}"
                for entry in entries or ()
                if isinstance(entry, int) and entry > num_iterations
            ]
        elif entries is not None and len(entries) > num_iterations:
            found.append(
                f"{key} has {len(entries)} entries but num_iterations={num_iterations}; give at most one entry per "
                "iteration (the last entry holds for later iterations)"
            )
    return shapes, found


# Each schedule and the type of its entries (their ranges are checked by the engine settings).
SCHEDULES: dict[str, Number] = {
    "pairs.rho_schedule": Number(float),
    "meta_judge.max_judgment_chars_schedule": Number(int),
    "schedule.judge_training_iterations": Number(int),
}


def _list(cfg: DictConfig, key: str, found: list[str]) -> list | None:
    value = _select(cfg, key)
    if value is _ABSENT or value is None:
        return None
    if not isinstance(value, ListConfig):
        found.append(f"{key}={value!r} is not a list; write it as [a, b, ...] or null")
        return None
    return list(value)
