"""Wiring a training run from the composed config: validate, load, build the Lightning objects, fit."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from metareward.compare.runs import final_metric
from metareward.config.build import ConfigError, RunSettings, build_settings, config_error
from metareward.engine.prompt_pool import PromptPoolError
from metareward.evaluation.data import EvaluationDataError
from metareward.model.embedded import EmbeddedModelError
from metareward.model.loading import ModelLoadError
from metareward.run.console import closing_report, quiet_libraries
from metareward.run.resume import is_launched_worker, prepare_run_dir
from metareward.sft.formatting import SFTDataError
from metareward.storage.artifacts import ArtifactError
from metareward.storage.run_layout import CHECKPOINTS, saved_weights_dir

log = logging.getLogger("metareward")

USER_ERRORS = (
    ConfigError,
    PromptPoolError,
    ModelLoadError,
    EmbeddedModelError,
    EvaluationDataError,
    SFTDataError,
    ArtifactError,  # SavedAdapterError too: saved weights that do not read back or fit
)


def cue_read_problems(tokenizer, engine, evaluations_read_scores: bool) -> list[str]:
    """Probability reads need every choice of the judge prompt to be one token after its cue for this tokenizer (a
    0-10 scale's "10" is two tokens for most small models). The loop reads them unless its mode is parse; the judge
    quality and seed judge evaluations always read scores so. Pairwise ranking's comparisons read "A"/"B" after their
    own `Winner:` cue in the meta-judge's verdict mode."""
    from metareward.engine.judging import winner_line
    from metareward.engine.ranking import PairwiseRanking
    from metareward.generation.choice_probs import choice_token_ids

    prompt = engine.judge_prompt
    readers = []  # (who reads, what to do instead, cue, choices)
    if evaluations_read_scores:
        readers.append(
            (
                "the judge quality and seed judge evaluations",
                "use another judge/prompt",
                prompt.score_cue,
                prompt.score_choices,
            )
        )
    elif engine.score_mode != "parse":
        fix = "use judge.score_mode=parse or another judge/prompt"
        readers.append((f"judge.score_mode={engine.score_mode}", fix, prompt.score_cue, prompt.score_choices))
    if engine.verdict_mode != "parse":
        fix = "use meta_judge.verdict_mode=parse or another judge/prompt"
        readers.append(
            (f"meta_judge.verdict_mode={engine.verdict_mode}", fix, prompt.winner_cue, prompt.winner_choices)
        )
        if isinstance(engine.ranking, PairwiseRanking):  # its comparisons end "Winner: A", read in the same mode
            line = winner_line(prompt.winner_label)
            who = f"judge/ranking=pairwise's comparisons (meta_judge.verdict_mode={engine.verdict_mode})"
            readers.append((who, fix, line.cue, line.choices))
    problems = []
    for who, fix, cue, choices in readers:
        try:
            choice_token_ids(tokenizer, cue + " ", choices)
        except ValueError as error:
            problems.append(
                f"{who} read the judge prompt's choices {list(choices)} from next-token probabilities, but this "
                f"model's tokenizer cannot ({str(error).splitlines()[0]}); {fix}"
            )
    return problems


# The settings the preflight built, by the config it read: train.py runs the preflight (a Hydra callback) and then the
# run in one process, so the run takes them from here instead of building them again.
_CHECKED: dict[str, RunSettings] = {}


def hand_over(cfg: DictConfig, settings: RunSettings) -> None:
    """Keep the settings the preflight built from `cfg` for the run of that same config (only the latest)."""
    _CHECKED.clear()
    _CHECKED[OmegaConf.to_yaml(cfg)] = settings


def run_settings(cfg: DictConfig) -> RunSettings:
    """The run's settings: those the preflight built from this very config (used once), else built now."""
    return _CHECKED.pop(OmegaConf.to_yaml(cfg), None) or build_settings(cfg)


@dataclass
class TrainResult:
    run_dir: Path
    module: Any  # the fitted DPOModule: its adapters hold M_T
    interrupted: bool = False


def train(cfg: DictConfig) -> TrainResult:
    """Run every iteration of the configured experiment."""
    import lightning as L

    from metareward.engine.weights_history import WeightsHistory
    from metareward.lightning.callbacks import IterationSummary, ResumeCheckpoint
    from metareward.lightning.datamodule import SelfJudgedDataModule
    from metareward.lightning.dpo_module import DPOModule
    from metareward.lightning.handoff import RunContext, in_run_order
    from metareward.model.adapters import target_problems
    from metareward.model.full_weights import role_weights
    from metareward.model.loading import load_model_and_tokenizer
    from metareward.sft.warm_start import load_warm_start_data, start_from_warm_m0
    from metareward.training.collate import PairCollator

    settings = run_settings(cfg)
    warm = settings.warm_start
    if warm.enabled:
        load_warm_start_data(warm, settings.engine.judge_prompt)  # a bad IFT/EFT file fails here, before the model
    run_dir = Path(cfg.paths.output_dir)
    resume = bool(cfg.get("resume", False))
    pool = settings.data.load()
    # The context exists before the model, so every callback (and any bad file one names) is built first.
    context = RunContext.for_run(run_dir, settings.generation, settings.engine)
    callbacks = [_callback(c, context) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [_instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    _check_kinds(cfg, callbacks, loggers)
    checkpoint = prepare_run_dir(cfg, run_dir, resume)
    summary = IterationSummary(context, settings.experiment, resume=resume)
    callbacks = in_run_order(
        [*callbacks, *_pass_choice(settings, context, callbacks), summary, ResumeCheckpoint(context)]
    )
    log.info("prompt pool: %d prompts from %s (dropped: %s)", len(pool.prompts), pool.source, pool.drops or "none")
    L.seed_everything(settings.seed, workers=True, verbose=False)
    dtype = settings.model.resolved_dtype()
    log.info("model.dtype=%s: weights in %s (%s)", settings.model.dtype, dtype.name, dtype.reason)
    model, tokenizer = load_model_and_tokenizer(settings.model)
    evaluations_read_scores = any(getattr(c, "reads_judge_scores", False) for c in callbacks)
    unreadable = cue_read_problems(tokenizer, settings.engine, evaluations_read_scores)
    if settings.model.finetune == "lora":
        unreadable += target_problems(model, settings.adapters)
    if unreadable:
        raise config_error(unreadable)
    _log_system_prompts(pool, tokenizer)
    adapters = role_weights(model, settings.model.finetune, settings.adapters)
    context.attach_model(adapters, tokenizer)
    if warm.enabled:  # iteration 0: M0 is the warm-started model (trained, or loaded when this run saved it)
        if settings.engine.kept_roles() and not is_launched_worker():  # CREAM's iteration 1 compares with them
            WeightsHistory(adapters).save_before_warm_start(run_dir, settings.engine.kept_roles())
        folder = saved_weights_dir(_checkpoints_dir(callbacks, run_dir), 0)
        judge_prompt = settings.engine.judge_prompt
        stats = start_from_warm_m0(adapters, tokenizer, warm, folder, judge_prompt, write=not is_launched_worker())
        summary.extra.update({"warm_start": stats} if stats else {})
    dpo = settings.dpo
    module = DPOModule(adapters, dpo.objective, dpo.optim)  # built once, by the config check
    collator = PairCollator(tokenizer, dpo.max_prompt_tokens, dpo.max_completion_tokens)
    datamodule = SelfJudgedDataModule(
        context, settings.engine, pool, collator, dpo.batch_size, dpo.epochs_per_iteration, resume=resume
    )
    derived = {"accumulate_grad_batches": settings.accumulate_grad_batches} if settings.accumulate_grad_batches else {}
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **derived)  # epochs: iterations
    if checkpoint is not None:
        log.info("resuming from %s", checkpoint)
    try:
        # weights_only: a resume checkpoint holds tensors and plain values only (resume.checkpoint_problem checked it)
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(checkpoint) if checkpoint else None, weights_only=True)
    except SystemExit:
        if not trainer.interrupted:  # Lightning exits after a graceful shutdown on Ctrl-C; anything else goes on
            raise
    return TrainResult(run_dir, module, interrupted=bool(trainer.interrupted))


def _checkpoints_dir(callbacks: list[Any], run_dir: Path) -> Path:
    """Where the run saves its weights: the adapter checkpoint's folder, or `checkpoints/` when it is switched off."""
    from metareward.lightning.callbacks import AdapterCheckpoint

    saving = [c.directory for c in callbacks if isinstance(c, AdapterCheckpoint)]
    return saving[0] if saving else run_dir / CHECKPOINTS


def _log_system_prompts(pool: Any, tokenizer: Any) -> None:
    """Say where the pool's system prompts go when the chat template has no system role of its own."""
    from metareward.model.chat import accepts_system_role

    with_system = sum(bool(prompt.system) for prompt in pool.prompts)
    if with_system and not accepts_system_role(tokenizer):
        log.info(
            "%d prompts have a system prompt and the chat template of %s has no system role: the system prompt is "
            "put at the head of the user turn",
            with_system,
            tokenizer.name_or_path or type(tokenizer).__name__,
        )


def _callback(node: Any, context: Any) -> Any:
    """A configured callback; a RunCallback (one of ours) is given the run's context as `context=`."""
    from hydra.utils import get_object

    from metareward.lightning.handoff import RunCallback

    try:
        target = get_object(str(node._target_))
    except Exception:  # noqa: BLE001 - a target that does not resolve: instantiate reports it in its own words
        target = None
    wants_context = isinstance(target, type) and issubclass(target, RunCallback)
    return _instantiate(node, context=context) if wants_context else _instantiate(node)


def _pass_choice(settings: RunSettings, context: Any, callbacks: list[Any]) -> list[Any]:
    """The callback that ends each iteration with its best pass (`dpo.choose_pass_by`), reading the run's win-rate
    evaluation (the config check made sure there is one); none when the last pass is kept."""
    from metareward.lightning.eval_callbacks import WinRateCallback
    from metareward.lightning.pass_choice import PassChoice

    figure = settings.dpo.choose_pass_by
    if figure is None:
        return []
    evaluation = next(c for c in callbacks if isinstance(c, WinRateCallback))
    return [PassChoice(context, evaluation, figure, settings.dpo.epochs_per_iteration)]


def _check_kinds(cfg: DictConfig, callbacks: list[Any], loggers: list[Any]) -> None:
    """Refuse, in one line each, a `callbacks` or `logger` entry whose target is not a Lightning Callback or Logger
    (Lightning would fail on it mid-run, in a traceback)."""
    import lightning as L
    from lightning.pytorch.loggers import Logger

    problems = []
    for group, made, kind in (("callbacks", callbacks, L.Callback), ("logger", loggers, Logger)):
        names = [name for name, node in (cfg.get(group) or {}).items() if node is not None]
        for name, instance in zip(names, made):
            if not isinstance(instance, kind):
                target = cfg[group][name]._target_
                problems.append(
                    f"{group}.{name}._target_={target} makes a {type(instance).__name__}, not a Lightning "
                    f"{kind.__name__}; point it at a {kind.__name__} class or set {group}.{name}=null"
                )
    if problems:
        raise config_error(problems)


def _instantiate(node: Any, **kwargs: Any) -> Any:
    """Hydra's instantiate, with a user mistake inside a constructor surfacing as itself rather than wrapped."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, USER_ERRORS):
            raise error.__cause__ from None
        raise


def main(cfg: DictConfig) -> float | None:
    """Entry point behind train.py: user mistakes end in one clear message, not a traceback.

    Returns the last iteration's `optimize_metric` (e.g. eval.lc_win_rate) when one is configured: a Hydra
    sweeper such as Optuna maximises it.
    """
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    quiet_libraries()
    if _wandb_offline(cfg):
        os.environ.setdefault("WANDB_MODE", "offline")
    try:
        result = train(cfg)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        result = TrainResult(Path(cfg.paths.output_dir), None, interrupted=True)
    if result.interrupted:
        print(f"interrupted; finished stages are kept; resume with: {resume_command(result.run_dir)}", file=sys.stderr)
        sys.exit(130)
    print(closing_report(result.run_dir))
    metric = cfg.get("optimize_metric")
    return final_metric(result.run_dir / "summary.json", str(metric)) if metric else None


def resume_command(run_dir: Path) -> str:
    """The command that continues this run: its own overrides plus the run directory and resume=true."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith(("resume=", "hydra.run.dir="))]
    except ValueError:  # not inside a Hydra job
        overrides = []
    return " ".join(["python train.py", *overrides, f"hydra.run.dir={run_dir}", "resume=true"])


def _wandb_offline(cfg: DictConfig) -> bool:
    wandb = (cfg.get("logger") or {}).get("wandb")
    return bool(wandb is not None and wandb.get("offline", True))
