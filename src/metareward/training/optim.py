"""Learning-rate schedules within one iteration, and what DPO's optimisation is built from (pure PyTorch).

A schedule is any object with `rate(step, total_steps, peak_lr) -> float`: the rate of optimizer step `step`
(0-based) of an iteration of `total_steps` steps, given the optimizer's configured rate `peak_lr` (`dpo.lr`). Each
iteration is a fresh DPO run from M_t, so the schedule restarts at step 0 every iteration. The schedules here warm
up linearly over `warmup_steps` and then follow their shape; the config names one with `_target_` in
`conf/dpo/lr_schedule/`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import torch

from metareward.schema.rules import Number

# The ranges of the schedules' values, stated once: the config's dpo.warmup_steps and dpo.min_lr are checked by them.
WARMUP_STEPS = Number(int, 0)
MIN_LR = Number(float, 0)


class LearningRateSchedule(Protocol):
    """What DPOModule asks of a schedule."""

    def rate(self, step: int, total_steps: int, peak_lr: float) -> float: ...


@dataclass(frozen=True)
class WarmupSchedule:
    """Linear warm-up to peak_lr over `warmup_steps` steps, then `after_warmup(progress, peak_lr)`, where progress
    runs from 0 at the first step after warm-up to 1 at the iteration's last step."""

    warmup_steps: int

    def __post_init__(self) -> None:
        if not WARMUP_STEPS.holds(self.warmup_steps):
            raise ValueError(
                f"warmup_steps must be {WARMUP_STEPS.describe()}, got {self.warmup_steps}; use 0 for no warm-up."
            )

    def rate(self, step: int, total_steps: int, peak_lr: float) -> float:
        if step < self.warmup_steps:
            return peak_lr * (step + 1) / self.warmup_steps
        span = max(total_steps - self.warmup_steps - 1, 1)
        progress = min(max(step - self.warmup_steps, 0) / span, 1.0)
        return self.after_warmup(progress, peak_lr)

    def after_warmup(self, progress: float, peak_lr: float) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class ConstantSchedule(WarmupSchedule):
    """peak_lr after the warm-up."""

    def after_warmup(self, progress: float, peak_lr: float) -> float:
        return peak_lr


@dataclass(frozen=True)
class DecaySchedule(WarmupSchedule):
    """A decay from peak_lr to `min_lr` after the warm-up: min_lr + (peak_lr - min_lr) * shape(progress)."""

    min_lr: float

    def __post_init__(self) -> None:
        super().__post_init__()
        if not MIN_LR.holds(self.min_lr):
            raise ValueError(f"min_lr must be {MIN_LR.describe()}, got {self.min_lr}; use 0 to decay to zero.")

    def after_warmup(self, progress: float, peak_lr: float) -> float:
        return self.min_lr + (peak_lr - self.min_lr) * self.shape(progress)

    def shape(self, progress: float) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class LinearSchedule(DecaySchedule):
    """shape = 1 - progress."""

    def shape(self, progress: float) -> float:
        return 1.0 - progress


@dataclass(frozen=True)
class CosineSchedule(DecaySchedule):
    """shape = (1 + cos(pi * progress)) / 2 (Loshchilov & Hutter 2017, SGDR, Eq. 5, one cycle without restarts)."""

    def shape(self, progress: float) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * progress))


OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


@dataclass(frozen=True)
class OptimSettings:
    """How DPO optimises the adapters: `optimizer` builds the optimizer from the adapter parameters (the
    `dpo.optimizer` component), `lr_schedule` sets its rate every step, and `reset_each_iteration` forgets the
    optimizer's moments at the start of every iteration."""

    optimizer: OptimizerFactory
    lr_schedule: LearningRateSchedule
    reset_each_iteration: bool


def apply_schedule(
    optimizer: torch.optim.Optimizer, schedule: LearningRateSchedule, step: int, total_steps: int
) -> float:
    """Sets every parameter group's rate for `step` and returns it. The peak is the optimizer's configured rate
    (`defaults["lr"]`), which a checkpoint never overwrites, so a resumed run follows the same schedule."""
    lr = schedule.rate(step, total_steps, float(optimizer.defaults["lr"]))
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
