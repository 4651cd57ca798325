"""The `trainer` group: Lightning's Trainer arguments (conf/trainer/). The loop depends on a few of them, and some
values Lightning accepts quietly break it or only fail once training starts; those are stated here with their
rules. Whatever else Lightning refuses (an unknown argument, an accelerator or precision it does not know, more
devices than the machine has) is found by building a Trainer from the settings before any model loads
(`lightning_refusals`), and reported in one line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from metareward.schema.components import one_line
from metareward.schema.rules import COUNT, Choice, Fixed, Number, setting

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
