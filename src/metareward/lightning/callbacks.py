"""Callbacks: per-iteration statistics and summary.json, per-iteration adapter checkpoints, the resume checkpoint.

Each is a `RunCallback`: it gets the run's `RunContext` by constructor and runs in the order of its `Stage`
(see handoff.py).
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from metareward.compare.run_report import figures_line
from metareward.engine.timing import peak_rss_mb
from metareward.lightning.handoff import RunCallback, RunContext, Stage, iteration_of
from metareward.lightning.strategies import full_weights
from metareward.model.adapters import plain_name
from metareward.storage.artifacts import failed_write, read_json, write_json
from metareward.storage.run_layout import CHECKPOINT, saved_weights_dir

log = logging.getLogger(__name__)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class IterationSummary(RunCallback):
    """Logs each iteration's data statistics and writes `summary.json` at the run root after every iteration.

    The file is rewritten atomically after each iteration, so a crash keeps every finished iteration's record.
    Its `eval` record is what the evaluation callbacks published on the context's board: this callback's stage
    (SUMMARIZE) puts it after every evaluation, and it seals the iteration on the board as it reads it.
    """

    stage = Stage.SUMMARIZE

    def __init__(self, context: RunContext, experiment: str, resume: bool = False) -> None:
        super().__init__(context)
        self.path = context.run_dir / "summary.json"
        self.experiment = experiment
        self.started = time.perf_counter()
        self.boundary = self.started
        self.train_started = self.started
        self.iterations: list[dict[str, Any]] = []
        self.earlier_seconds = 0.0  # time spent by the attempts this run resumes from
        self.base_fingerprint: torch.Tensor | None = None
        self.global_zero = True
        self.extra: dict[str, Any] = {}  # run-level records written beside the iterations (e.g. warm_start)
        self.status = "running"
        if resume and self.path.is_file():
            earlier = read_json(self.path)
            self.iterations = list(earlier.get("iterations", []))
            self.extra = {key: earlier[key] for key in ("warm_start",) if key in earlier}
            self.earlier_seconds = float(earlier.get("seconds", 0.0))

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.global_zero = trainer.is_global_zero
        self.started = self.boundary = time.perf_counter()
        with full_weights(trainer):
            self.base_fingerprint = self.context.adapters.fingerprint()
        self._write()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train_started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now = time.perf_counter()
        iteration = iteration_of(trainer)
        data = self.context.data_for(iteration)
        stats = dict(data.stats) if data is not None else {}
        stats["time/train"] = now - self.train_started
        train = pl_module.iteration_means()
        with full_weights(trainer):
            weights = self.context.adapters.weight_record(self.base_fingerprint, plain_name)
        record = {
            "iteration": iteration,
            "actor_pairs": int(stats.get("pairs/actor_count", 0)),
            "judge_pairs": int(stats.get("pairs/judge_count", 0)),
            "pairs_digest": data.digest if data is not None else "",
            "train": {
                "loss": _finite(train.get("train/loss", math.nan)),
                "reward_accuracy": _finite(train.get("train/reward_accuracy", math.nan)),
                **{k.split("/", 1)[1]: v for k, v in train.items() if k not in ("train/loss", "train/reward_accuracy")},
            },
            "eval": self.context.board.seal(iteration),
            "weights": weights,
            "seconds": now - self.boundary,
            "phases": {k.split("/", 1)[1]: v for k, v in stats.items() if k.startswith("time/")},
            "stats": {k: v for k, v in stats.items() if not k.startswith("time/")},
        }
        self.boundary = now
        self.iterations = [it for it in self.iterations if it["iteration"] < iteration] + [record]
        self.global_zero = trainer.is_global_zero
        for logger in trainer.loggers:
            logger.log_metrics({**stats, "iteration": iteration}, step=trainer.global_step)
        log.info("iteration %d done in %.1f s: %s", iteration, record["seconds"], figures_line(record["train"]))
        self._write()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.status = "finished"
        self._write()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.status = "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed"
        self._write()

    def _write(self) -> None:
        if not self.global_zero:
            return
        write_json(
            self.path,
            {
                "experiment": self.experiment,
                "status": self.status,
                "seconds": self.earlier_seconds + time.perf_counter() - self.started,
                "peak_rss_mb": peak_rss_mb(),
                **self.extra,
                "iterations": self.iterations,
            },
        )


class AdapterCheckpoint(RunCallback):
    """Saves what trains after every iteration (`iter_XX/<adapter>/`: each LoRA adapter in PEFT's format, or with
    `model.finetune=full` the whole model in Hugging Face format as `policy`), and the merged actor on request.

    Stage SAVE, before the evaluations: a run killed while it evaluates keeps the iteration's adapters.
    """

    stage = Stage.SAVE

    def __init__(self, context: RunContext, directory: str | Path, save_merged: bool = False) -> None:
        super().__init__(context)
        self.directory = Path(directory)
        self.save_merged = save_merged

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        target = saved_weights_dir(self.directory, iteration_of(trainer))
        adapters = self.context.adapters
        with full_weights(trainer):  # every rank gathers; rank 0 writes
            if not trainer.is_global_zero:
                return
            named = adapters.model.named_parameters()
            tensors = {plain_name(n): p.detach().cpu() for n, p in named if adapters.is_trained(n)}
            adapters.save(target, tensors, self.context.tokenizer)
        log.info("saved adapters to %s", target)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.save_merged or not trainer.is_global_zero:
            return
        adapters = self.context.adapters
        adapters.activate("actor")
        merged = adapters.model  # with full fine-tuning the actor is the model itself
        if hasattr(merged, "merge_and_unload"):
            merged = merged.merge_and_unload(adapter_names=[adapters.adapter_for_role["actor"]])
        merged.save_pretrained(str(self.directory / "merged_actor"))
        self.context.tokenizer.save_pretrained(str(self.directory / "merged_actor"))
        log.info("saved the merged actor model to %s", self.directory / "merged_actor")


class ResumeCheckpoint(RunCallback):
    """After every iteration, a Lightning checkpoint (adapters, optimizer, loop state) at run_dir/CHECKPOINT,
    atomically. Stage RESUME, after every other callback: once it is written, the iteration counts as done.

    `python train.py ... hydra.run.dir=<run> resume=true` restarts from it: finished iterations are not redone.
    """

    stage = Stage.RESUME

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.path = context.run_dir / CHECKPOINT

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        try:
            # collective; only global rank 0 writes the file (DeepSpeed: a folder). weights_only=False: the optimizer and
            # loop state are saved too (Lightning logs its default when this is left unset)
            trainer.save_checkpoint(temporary, weights_only=False)
        except BaseException as error:  # the run's last checkpoint stays as it was, and no part of the new one
            # torch or fsspec: a full disk becomes a sentence (made while the device is still full); others, and an
            # interrupt (SIGTERM, Ctrl-C), go on as they are
            failure = failed_write(self.path, error) if isinstance(error, Exception) else None
            if temporary.is_dir():
                shutil.rmtree(temporary, ignore_errors=True)
            temporary.unlink(missing_ok=True)
            if failure is None:
                raise
            raise failure from None
        trainer.strategy.barrier("resume-checkpoint")
        if trainer.is_global_zero:
            if self.path.is_dir() and temporary.is_dir():  # a folder cannot replace a folder in one step
                previous = self.path.with_name(f".{self.path.name}.old")
                self.path.replace(previous)
                temporary.replace(self.path)
                shutil.rmtree(previous)
            else:
                temporary.replace(self.path)
