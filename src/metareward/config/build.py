"""From the composed Hydra config to typed settings, built once per run before any heavy work.

Each group is a frozen settings dataclass whose fields state their config key and rule beside them (`schema.rules`);
one walker reads them all, so every problem is reported at once: values of the wrong type or out of range, then the
rules that tie settings together (methods of the group they belong to), the machine and the files.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from metareward.config.dpo import DPOSettings
from metareward.config.trainer import TrainerSettings, device_count, lightning_refusals
from metareward.config.validation import environment_problems, evaluation_problems
from metareward.engine.prompt_pool import PoolSettings
from metareward.engine.settings import EngineSettings
from metareward.evaluation.settings import EvaluationSettings
from metareward.generation.spec import GenerationSpec, read_generation
from metareward.model.adapters import AdapterSpec
from metareward.model.loading import ModelSpec
from metareward.model.precision import AUTO
from metareward.schema.rules import COUNT, UNUSABLE, Value, read, setting
from metareward.sft.warm_start import WarmStartSettings


class ConfigError(ValueError):
    """One or more config values are unusable; the message lists each, naming the key and the fix."""


ErrorType = TypeVar("ErrorType", bound=Exception)


def problems_error(error_type: type[ErrorType], heading: str, problems: list[str]) -> ErrorType:
    """Every problem in one error: one on one line (`<heading>: ...`), several as a list below the heading. The run's
    config check (ConfigError) and the export's (ExportError) both report this way."""
    if len(problems) == 1:
        return error_type(f"{heading}: {problems[0]}")
    return error_type(f"{heading}:\n  - " + "\n  - ".join(problems))


def config_error(problems: list[str]) -> ConfigError:
    """`invalid config: ...`, one problem per line."""
    return problems_error(ConfigError, "invalid config", problems)


# Each group's settings and the config key it sits under, in the order their problems are reported.
GROUPS: dict[str, tuple[type, str]] = {
    "model": (ModelSpec, "model"),
    "adapters": (AdapterSpec, "model.adapters"),
    "data": (PoolSettings, "data"),
    "engine": (EngineSettings, ""),
    "dpo": (DPOSettings, "dpo"),
    "warm_start": (WarmStartSettings, "warm_start"),
    "evaluation": (EvaluationSettings, "evaluation"),
    "trainer": (TrainerSettings, "trainer"),
}


@dataclass(frozen=True)
class RunSettings:
    """Everything a run is built from, read once before any model loads and handed on as it is."""

    num_iterations: int = setting("num_iterations", COUNT)
    experiment: str = setting("experiment", Value(str))
    model: ModelSpec
    adapters: AdapterSpec
    data: PoolSettings
    engine: EngineSettings
    dpo: DPOSettings
    warm_start: WarmStartSettings
    evaluation: EvaluationSettings
    generation: GenerationSpec
    trainer: TrainerSettings
    # trainer.accumulate_grad_batches derived from dpo.global_batch_size (None: the trainer's own value)
    accumulate_grad_batches: int | None = None

    @property
    def seed(self) -> int:
        return self.engine.seed

    def problems(self, max_epochs: Any) -> list[str]:
        """The rules that tie groups together: one Lightning epoch per iteration (conf/trainer/cpu.yaml), schedules
        that fit num_iterations, and DPO token limits that fit every answer a trained role can write."""
        found = self._schedule_problems()
        if max_epochs != self.num_iterations:
            found.append(
                f"trainer.max_epochs={max_epochs} differs from num_iterations={self.num_iterations}: each iteration "
                "is one epoch, so set num_iterations instead"
            )
        if self.model.finetune == "full" and self.generation.backend == "vllm" and self.generation.urls:
            found.append(
                "model.finetune=full with generation=vllm reloads the trained weights into servers the run starts "
                "itself, not into the ones generation.urls names; drop generation.urls"
            )
        return found + self._completion_limit_problems() + self._previous_judge_problems()

    def _previous_judge_problems(self) -> list[str]:
        # CREAM compares iteration t's judge with iteration t-1's. With split LoRA adapters only judge training moves
        # the judge adapter, so after an iteration without it the two judges are one and the same (C = 1: plain DPO).
        engine = self.engine
        if (
            "judge" not in engine.kept_roles()  # no previous judge: none asked for, or the ranking reads no judge
            or self.model.finetune == "full"
            or self.adapters.mode != "split"
        ):
            return []
        same = [t for t in range(2, self.num_iterations + 1) if not engine.trains_judge(t - 1)]
        if not same:
            return []
        problem = (
            "pairs/label=consistency compares each iteration's judge with the previous one's, but with "
            f"model.adapters.mode=split the judge adapter changes only when the judge trains, so in iterations {same} "
            "both judges would be the same model (every label 1: plain DPO); use model.adapters.mode=shared (one "
            "model, as CREAM trains), model.finetune=full, or train the judge in every iteration but the last"
        )
        return [problem]

    def _schedule_problems(self) -> list[str]:
        # Per-iteration lists may be shorter than the run (their last entry holds past their end), not longer.
        n, engine = self.num_iterations, self.engine
        found = [
            f"schedule.judge_training_iterations names iteration {i} but num_iterations={n}; use numbers from 1 to {n}"
            for i in engine.judge_training_iterations
            if i > n
        ]
        schedules = {
            "pairs.rho_schedule": engine.rho_schedule,
            "meta_judge.max_judgment_chars_schedule": engine.max_judgment_chars_schedule,
            "pairs.max_chosen_chars_schedule": engine.max_chosen_chars_schedule,
        }
        return found + [
            f"{key} has {len(entries)} entries but num_iterations={n}; give at most one entry per iteration (the last "
            "entry holds for later iterations)"
            for key, entries in schedules.items()
            if entries is not None and len(entries) > n
        ]

    def _completion_limit_problems(self) -> list[str]:
        # Pairs are never cut: a finished answer is at most max_new_tokens tokens with its end-of-turn token, so a
        # smaller dpo.max_completion_tokens would drop every long answer of a role that is trained.
        roles = [("actor", self.engine.actor)]
        if self.engine.judge_training_iterations:
            roles.append(("judge", self.engine.judge))
        limit = self.dpo.max_completion_tokens
        return [
            f"dpo.max_completion_tokens={limit} is below {name}.max_new_tokens={role.sampling.max_new_tokens}: every "
            f"{name} answer of that length would be dropped from the pairs; raise dpo.max_completion_tokens or lower "
            "the role's max_new_tokens"
            for name, role in roles
            if limit < role.sampling.max_new_tokens
        ]


def build_settings(cfg: DictConfig) -> RunSettings:
    """Typed settings from the config; raises ConfigError listing every problem."""
    settings, problems = read_settings(cfg)
    if problems or settings is None:
        raise config_error(problems)
    return settings


def read_settings(cfg: DictConfig) -> tuple[RunSettings | None, list[str]]:
    """The settings (None when a value has the wrong type) and every problem of the config, the machine and the
    files it names (the preflight checks the data files of settings that hold, even when other problems refuse it)."""
    parts = _read_groups(cfg)
    values = {name: value for name, (value, _) in parts.items()}
    settings, problems = read(RunSettings, cfg, **values)
    problems += [problem for _, found in parts.values() for problem in found]
    problems += [p for name in RULED if values[name] is not UNUSABLE for p in values[name].problems()]
    if values["dpo"] is not UNUSABLE and not any(p.startswith("dpo.") for p in problems):
        values["dpo"], refused = values["dpo"].built()  # a bad shared value is reported once, above
        problems += refused
    problems += environment_problems(cfg) + evaluation_problems(cfg)
    if not any(p.startswith("trainer") for p in problems):  # what Lightning itself refuses, once ours hold
        problems += lightning_refusals(cfg.trainer)
    if values["generation"] is not UNUSABLE:
        trainer = cfg.trainer
        problems += values["generation"].problems(training_processes(trainer), trainer.get("accelerator", "cpu"))
    if settings is UNUSABLE:
        return None, problems
    problems += settings.problems(cfg.trainer.get("max_epochs"))
    accumulate, found = gradient_accumulation(settings.dpo, cfg.trainer)
    problems += found
    warm = settings.warm_start  # the warm start draws its batches with the run's seed
    warm = replace(warm, optim=replace(warm.optim, seed=settings.seed))
    generation = settings.generation  # a server this run starts computes in the dtype the policy loads in
    if generation.server.dtype == AUTO:
        server = replace(generation.server, dtype=settings.model.resolved_dtype().name)
        generation = replace(generation, server=server)
    settings = replace(settings, warm_start=warm, generation=generation, accumulate_grad_batches=accumulate)
    return replace(settings, dpo=values["dpo"]), problems


def training_processes(trainer: Any) -> int | None:
    """How many training processes the trainer starts: devices per node x nodes (None when it cannot be told)."""
    devices, nodes = device_count(trainer), trainer.get("num_nodes", 1)
    return devices * nodes if devices is not None and isinstance(nodes, int) else None


def gradient_accumulation(dpo: DPOSettings, trainer: Any) -> tuple[int | None, list[str]]:
    """The trainer.accumulate_grad_batches that gives dpo.global_batch_size pairs per optimizer step on this
    trainer's devices and nodes (None when no global batch is set: the trainer's own value holds)."""
    if dpo.global_batch_size is None:
        return None, []
    devices, nodes = device_count(trainer), trainer.get("num_nodes", 1)
    shown = f"dpo.global_batch_size={dpo.global_batch_size}"
    if devices is None or not isinstance(nodes, int):
        return None, [f"{shown} is divided over the devices: set trainer.devices to a number, a list or auto"]
    if trainer.get("accumulate_grad_batches", 1) != 1:
        return None, [
            f"{shown} derives trainer.accumulate_grad_batches: leave that at 1 (or set global_batch_size null)"
        ]
    per_step = dpo.batch_size * devices * nodes
    if dpo.global_batch_size % per_step:
        factors = f"{dpo.batch_size} x {devices} x {nodes} = {per_step}"
        return None, [f"{shown} is not a multiple of dpo.batch_size x devices x nodes ({factors}); change either"]
    return dpo.global_batch_size // per_step, []


# The groups with rules that tie two of their settings together (their `problems()`).
RULED = ("model", "engine", "dpo", "warm_start", "trainer")


def _read_groups(cfg: DictConfig) -> dict[str, tuple[Any, list[str]]]:
    """Each group read by its settings' rules; the engine is given DPO's prompt plus completion budget, the
    longest prompt it may send."""
    dpo = read(DPOSettings, cfg.get("dpo"), "dpo")
    budget = 0 if dpo[0] is UNUSABLE else dpo[0].max_prompt_tokens + dpo[0].max_completion_tokens
    parts = {}
    for name, (cls, prefix) in GROUPS.items():
        given = {"max_prompt_tokens": budget} if cls is EngineSettings else {}
        node = OmegaConf.select(cfg, prefix) if prefix else cfg
        parts[name] = dpo if cls is DPOSettings else read(cls, node, prefix, **given)
    parts["generation"] = _generation(cfg)
    return parts


def _generation(cfg: DictConfig) -> tuple[Any, list[str]]:
    """The `generation` group (a missing one: the in-process sampler)."""
    return read_generation(cfg.get("generation"))
