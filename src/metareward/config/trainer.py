"""The `trainer` group: Lightning's Trainer arguments (conf/trainer/). The loop depends on a few of them, and some
values Lightning accepts quietly break it or only fail once training starts; those are stated here with their
rules. Whatever else Lightning refuses (an unknown argument, an accelerator or precision it does not know, more
devices than the machine has) is found by building a Trainer from the settings before any model loads
(`lightning_refusals`), and reported in one line."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from metareward.schema.components import one_line
from metareward.schema.rules import COUNT, Choice, Fixed, Number, Value, setting

# Lightning's names for DDP without unused-parameter detection (its default strategy with several devices).
LIGHTNING_DDP_NAMES = ("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook")
WHOLE_ITERATION = "every pair of an iteration is trained, and a limit would skip some without a count"


@dataclass(frozen=True)
class TrainerSettings:
    """The Trainer arguments the loop reads or relies on (max_epochs is tied to num_iterations by RunSettings)."""

    accumulate_grad_batches: int = setting("accumulate_grad_batches", COUNT, 1)
    num_nodes: int = setting("num_nodes", COUNT, 1)
    log_every_n_steps: int = setting("log_every_n_steps", COUNT, 50)
    gradient_clip_val: float | None = setting(
        "gradient_clip_val", Number(float, 0, nullable=True, reason="0 or null: no clipping"), None
    )
    deterministic: Any = setting("deterministic", Choice((None, True, False, "warn")), None)
    reload_dataloaders_every_n_epochs: int = setting(
        "reload_dataloaders_every_n_epochs", Fixed((1,), "each iteration makes its pairs when its epoch starts"), 1
    )
    use_distributed_sampler: bool = setting(
        "use_distributed_sampler", Fixed((False,), "the DataModule shares the batches out over the ranks itself"), False
    )
    max_steps: int = setting(
        "max_steps",
        Fixed((-1,), "a step limit ends the run inside an iteration; set num_iterations or dpo.epochs_per_iteration"),
        -1,
    )
    limit_train_batches: Any = setting("limit_train_batches", Fixed((1.0, 1, None), WHOLE_ITERATION), None)
    overfit_batches: Any = setting("overfit_batches", Fixed((0.0, 0), WHOLE_ITERATION), 0.0)
    fast_dev_run: Any = setting(
        "fast_dev_run",
        Fixed((False, 0), "it trains one batch and skips the checkpoints a resume needs; use +experiment=smoke"),
        False,
    )
    max_time: Any = setting(
        "max_time",
        Fixed(
            (None,),
            "it ends the run inside an iteration and reports it finished; a scheduler's time limit sends SIGTERM, "
            "which stops the run so that it resumes",
        ),
        None,
    )
    # Lightning's own forms; what it refuses is found by building a Trainer
    accelerator: Any = setting("accelerator", Value(), "auto")
    devices: Any = setting("devices", Value(), 1)
    strategy: Any = setting("strategy", Value(), None)

    def problems(self) -> list[str]:
        """Several training processes need a strategy of conf/trainer/ (ddp, fsdp, deepspeed): each step trains one
        adapter, and Lightning's default DDP stops at the first step on the other's unused parameters."""
        processes = (device_count({"devices": self.devices, "accelerator": self.accelerator}) or 1) * self.num_nodes
        named = str(self.strategy or "auto")
        if processes > 1 and named in LIGHTNING_DDP_NAMES:
            problem = (
                f"trainer.devices={self.devices} with trainer.strategy={named} runs Lightning's default DDP, which "
                "stops at the first step (each step trains one adapter and leaves the other's parameters unused); "
                "use trainer=ddp (or fsdp, deepspeed)"
            )
            return [problem]
        return []


def device_count(trainer: Any) -> int | None:
    """How many devices a process group of this trainer spans on this node, as Lightning counts them: a number, a
    list of device ids, or auto / -1 (every visible GPU for a GPU accelerator, one CPU process otherwise)."""
    import torch

    devices = trainer.get("devices", 1)
    if isinstance(devices, Sequence) and not isinstance(devices, str):
        return len(devices)
    if devices in ("auto", -1, "-1"):
        gpu = str(trainer.get("accelerator", "cpu")) in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        return max(torch.cuda.device_count(), 1) if gpu else 1
    return int(devices) if str(devices).isdigit() else None


def lightning_refusals(trainer: DictConfig) -> list[str]:
    """What Lightning's Trainer refuses in these settings, found by building one (no callbacks or loggers, no
    process started), each a sentence naming the group; [] when it builds."""
    import torch
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    deterministic = torch.are_deterministic_algorithms_enabled()  # a Trainer sets these flags for the process
    benchmark = torch.backends.cudnn.benchmark
    try:
        with _lightning_quiet():
            instantiate(trainer, callbacks=[], logger=False)
    except InstantiationException as error:
        cause = error.__cause__ if error.__cause__ is not None else error
        return [f"trainer: Lightning refuses these settings: {one_line(cause)}"]
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.benchmark = benchmark
    return []


@contextmanager
def _lightning_quiet() -> Iterator[None]:
    """Lightning's start-up notices (GPU available, precision) are printed once, by the run's own Trainer."""
    import lightning.pytorch  # noqa: F401 - its import sets its loggers' levels, which must come first

    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
