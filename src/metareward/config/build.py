"""From the composed Hydra config to typed settings, with every problem reported at once before heavy work."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from metareward.config.components import (
    DPOComponents,
    actor_ranking,
    dpo_components,
    dpo_shape_problems,
    judge_prompt,
    judge_prompt_problems,
    pair_labels,
    rejections,
)
from metareward.config.validation import environment_problems, evaluation_problems, value_problems
from metareward.engine.settings import EngineSettings
from metareward.generation.sampler import RoleSettings, SamplingSettings
from metareward.generation.spec import GenerationSpec, generation_spec
from metareward.model.adapters import AdapterSpec
from metareward.model.loading import ModelSpec


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


@dataclass(frozen=True)
class RunSettings:
    experiment: str
    num_iterations: int
    seed: int
    model: ModelSpec
    adapters: AdapterSpec
    engine: EngineSettings
    dpo: DPOComponents
    batch_size: int
    epochs_per_iteration: int
    max_prompt_tokens: int
    max_completion_tokens: int
    generation: GenerationSpec = field(default_factory=GenerationSpec)


def _role(cfg: DictConfig, name: str, problems: list[str]) -> RoleSettings:
    section = cfg[name]
    try:
        sampling = SamplingSettings(
            temperature=float(section.temperature),
            top_p=float(section.top_p),
            max_new_tokens=int(section.max_new_tokens),
        )
    except ValueError as error:
        problems.append(f"{name}: {error}")
        sampling = SamplingSettings(temperature=1.0, top_p=1.0, max_new_tokens=1)
    return RoleSettings(sampling=sampling, batch_size=int(section.batch_size))


def _optional_tuple(value: Any) -> tuple | None:
    return tuple(OmegaConf.to_container(value)) if value is not None else None  # type: ignore[arg-type]


def build_settings(cfg: DictConfig) -> RunSettings:
    """Typed settings from the config; raises ConfigError listing every invalid value."""
    problems: list[str] = []
    types, values = value_problems(cfg)
    if types:  # a value of the wrong type (num_iterations=two): named by its key, with every other such value
        raise config_error(
            types + values + dpo_shape_problems(cfg) + judge_prompt_problems(cfg) + environment_problems(cfg)
        )
    try:
        settings = _build(cfg, problems)
    except (TypeError, ValueError) as error:  # a value of the wrong type, e.g. actor.num_responses=many
        raise ConfigError(f"invalid config value: {error}") from None
    problems += values + settings.model.problems() + settings.adapters.problems() + settings.engine.problems()
    problems += settings.dpo.shape_problems() + dpo_value_problems(cfg.dpo, settings.dpo)
    if not any(problem.startswith("dpo.") for problem in problems):  # a bad shared value is reported only once
        problems += settings.dpo.refused()
    problems += environment_problems(cfg) + evaluation_problems(cfg)
    problems += settings.generation.problems(cfg.trainer.get("devices", 1), cfg.trainer.get("accelerator", "cpu"))
    if settings.num_iterations < 1:
        problems.append(f"num_iterations={settings.num_iterations} must be at least 1")
    if cfg.trainer.get("max_epochs") != settings.num_iterations:  # one epoch per iteration: conf/trainer/cpu.yaml
        problems.append(
            f"trainer.max_epochs={cfg.trainer.get('max_epochs')} differs from num_iterations={settings.num_iterations}: "
            "each iteration is one epoch, so set num_iterations instead"
        )
    problems += completion_limit_problems(settings)
    if settings.batch_size < 1 or settings.epochs_per_iteration < 1:
        problems.append("dpo.batch_size and dpo.epochs_per_iteration must be at least 1")
    if problems:
        raise config_error(problems)
    return settings


def dpo_value_problems(dpo: DictConfig, components: DPOComponents) -> list[str]:
    """The ranges of the values the DPO components share (their YAML files read them as ${dpo.<key>}), and a
    label smoothing that the chosen loss would silently ignore."""
    found = []
    beta, lr, min_lr = float(dpo.beta), float(dpo.lr), float(dpo.min_lr)
    if not beta > 0:
        found.append(f"dpo.beta={beta} must be > 0")
    if not lr > 0:
        found.append(f"dpo.lr={lr} must be > 0")
    if not 0 <= min_lr <= lr:
        found.append(f"dpo.min_lr={min_lr} must be in [0, dpo.lr]")
    smoothing = float(dpo.label_smoothing)
    if smoothing and components.loss.target and "label_smoothing" not in components.loss.params:
        found.append(
            f"dpo.label_smoothing={smoothing} is not read by the loss {components.loss.target} (dpo/loss); set it "
            "to 0, or choose dpo/loss=dpo for conservative DPO"
        )
    return found


def completion_limit_problems(settings: RunSettings) -> list[str]:
    """DPO must fit every answer a role can write (pairs are never cut): a finished answer is at most max_new_tokens
    tokens with its end-of-turn token, so dpo.max_completion_tokens below that would drop every long answer."""
    roles = [("actor", settings.engine.actor)]
    if settings.engine.judge_training_iterations:
        roles.append(("judge", settings.engine.judge))
    return [
        f"dpo.max_completion_tokens={settings.max_completion_tokens} is below {name}.max_new_tokens="
        f"{role.sampling.max_new_tokens}: every {name} answer of that length would be dropped from the pairs; raise "
        "dpo.max_completion_tokens or lower the role's max_new_tokens"
        for name, role in roles
        if settings.max_completion_tokens < role.sampling.max_new_tokens
    ]


def model_spec(model: DictConfig) -> ModelSpec:
    """The `model` group as a ModelSpec."""
    return ModelSpec(
        path=str(model.path),
        dtype=str(model.dtype),
        trust_remote_code=bool(model.trust_remote_code),
        attn_implementation=model.attn_implementation,
        quantization=model.get("quantization"),
        gradient_checkpointing=bool(model.get("gradient_checkpointing", False)),
    )


def adapter_spec(adapters: DictConfig) -> AdapterSpec:
    """The `model.adapters` group as an AdapterSpec."""
    return AdapterSpec(
        mode=str(adapters.mode),
        r=int(adapters.r),
        alpha=int(adapters.alpha),
        dropout=float(adapters.dropout),
        target_modules=tuple(adapters.target_modules),
    )


def _build(cfg: DictConfig, problems: list[str]) -> RunSettings:
    engine = EngineSettings(
        seed=int(cfg.seed),
        prompts_per_iteration=int(cfg.data.prompts_per_iteration),
        num_responses=int(cfg.actor.num_responses),
        num_judgments=int(cfg.judge.num_judgments),
        actor=_role(cfg, "actor", problems),
        judge=_role(cfg, "judge", problems),
        meta_judge=_role(cfg, "meta_judge", problems),
        drop_duplicate_responses=bool(cfg.actor.drop_duplicates),
        judge_prompt=judge_prompt(cfg, problems),
        ranking=actor_ranking(cfg, problems),
        score_mode=str(cfg.judge.score_mode),
        verdict_mode=str(cfg.meta_judge.verdict_mode),
        calibrate_position=bool(cfg.meta_judge.calibrate_position),
        pair_strategy=str(cfg.pairs.strategy),
        rho=float(cfg.pairs.rho),
        rho_schedule=_optional_tuple(cfg.pairs.rho_schedule),
        pair_labels=pair_labels(cfg, problems),
        rejections=rejections(cfg, problems),
        judge_training_iterations=tuple(int(i) for i in cfg.schedule.judge_training_iterations),
        max_judgment_chars=cfg.meta_judge.max_judgment_chars,
        max_judgment_chars_schedule=_optional_tuple(cfg.meta_judge.max_judgment_chars_schedule),
        elo_l2=float(cfg.meta_judge.elo_l2),
        max_prompt_tokens=int(cfg.dpo.max_prompt_tokens) + int(cfg.dpo.max_completion_tokens),
        unfinished=str(cfg.pairs.unfinished),
        progress=bool(cfg.progress),
    )
    return RunSettings(
        experiment=str(cfg.experiment),
        num_iterations=int(cfg.num_iterations),
        seed=int(cfg.seed),
        model=model_spec(cfg.model),
        adapters=adapter_spec(cfg.model.adapters),
        engine=engine,
        dpo=dpo_components(cfg, problems),
        batch_size=int(cfg.dpo.batch_size),
        epochs_per_iteration=int(cfg.dpo.epochs_per_iteration),
        max_prompt_tokens=int(cfg.dpo.max_prompt_tokens),
        max_completion_tokens=int(cfg.dpo.max_completion_tokens),
        generation=generation_spec(
            OmegaConf.to_container(cfg.generation, resolve=True) if "generation" in cfg else None
        ),
    )
