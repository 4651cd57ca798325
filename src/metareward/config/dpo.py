"""The `dpo` group: the values its parts share (their YAML files read them as ${dpo.<key>}) and the three parts,
each a class named by `_target_` in its own group: the preference loss (`conf/dpo/loss/`), the optimizer over the
adapter parameters (`conf/dpo/optimizer/`) and the per-iteration LR schedule (`conf/dpo/lr_schedule/`).

The parts are built once, by `built`, when every value and node of the group is sound (so that a bad shared value is
reported once, by its key, not again by each constructor); the run trains with what was built.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from metareward.core.losses import BETA, LABEL_SMOOTHING, NLL_WEIGHT, NLLRegularised, PreferenceLoss, with_nll_term
from metareward.evaluation.settings import PASS_FIGURES
from metareward.schema.components import Component, Node, checked_build, one_line
from metareward.schema.rules import COUNT, FLAG, NON_NEGATIVE, POSITIVE, Choice, Number, setting
from metareward.training.optim import MIN_LR, WARMUP_STEPS, OptimSettings


@dataclass(frozen=True)
class DPOSettings:
    """What DPO trains with. `objective` (the loss, plus the NLL term when `nll_weight > 0`) and `optim` are set by
    `built`; the run uses them as they are."""

    beta: float = setting("beta", BETA)
    label_smoothing: float = setting("label_smoothing", LABEL_SMOOTHING)
    nll_weight: float = setting("nll_weight", NLL_WEIGHT)
    lr: float = setting("lr", POSITIVE)
    min_lr: float = setting("min_lr", MIN_LR)
    weight_decay: float = setting("weight_decay", NON_NEGATIVE)
    warmup_steps: int = setting("warmup_steps", WARMUP_STEPS)
    batch_size: int = setting("batch_size", COUNT)
    epochs_per_iteration: int = setting("epochs_per_iteration", COUNT)
    # the figure of the win-rate evaluation that chooses the pass an iteration ends with (None: the last pass)
    choose_pass_by: str | None = setting("choose_pass_by", Choice((None, *PASS_FIGURES)))
    reset_optimizer_each_iteration: bool = setting("reset_optimizer_each_iteration", FLAG)
    max_prompt_tokens: int = setting("max_prompt_tokens", COUNT)
    max_completion_tokens: int = setting("max_completion_tokens", COUNT)
    loss: Component = setting("loss", Node())
    optimizer: Component = setting("optimizer", Node(supplied_later=1))  # given the adapter parameters first
    lr_schedule: Component = setting("lr_schedule", Node())
    global_batch_size: int | None = setting("global_batch_size", Number(int, 1, nullable=True), default=None)
    objective: PreferenceLoss | NLLRegularised | None = None
    optim: OptimSettings | None = None

    def problems(self) -> list[str]:
        """The rules that tie two settings together (each field's own rule is stated beside it)."""
        found = []
        if self.optimizer.target and not self.optimizer.partial:
            found.append("dpo.optimizer needs `_partial_: true`: it is built later, with the adapter parameters")
        if not self.min_lr <= self.lr:
            found.append(f"dpo.min_lr={self.min_lr} must be in [0, dpo.lr]")
        if self.choose_pass_by is not None and self.epochs_per_iteration < 2:
            found.append(
                f"dpo.choose_pass_by={self.choose_pass_by} chooses among an iteration's passes over its pairs, but "
                f"dpo.epochs_per_iteration={self.epochs_per_iteration}: make it 2 or more, or set choose_pass_by null"
            )
        if self.label_smoothing and self.loss.target and "label_smoothing" not in self.loss.params:
            found.append(
                f"dpo.label_smoothing={self.label_smoothing} is not read by the loss {self.loss.target} (dpo/loss); "
                "set it to 0, or choose dpo/loss=dpo for conservative DPO"
            )
        return found

    def built(self) -> tuple[DPOSettings, list[str]]:
        """These settings with the parts built, once each (the optimizer is tried on a stand-in parameter), and what
        their constructors refuse: a loss that is no PreferenceLoss, an optimizer without a learning rate, a
        schedule that gives no rate."""
        loss, found = checked_build(self.loss, PreferenceLoss)
        schedule, more = checked_build(self.lr_schedule, object)
        factory, most = checked_build(self.optimizer, object, supplied_later=1)
        found += more + most
        if found:
            return self, found
        optim = OptimSettings(factory, schedule, self.reset_optimizer_each_iteration)
        found = self._optimizer_problems(optim)
        return replace(self, objective=with_nll_term(loss, self.nll_weight), optim=optim), found

    def _optimizer_problems(self, optim: OptimSettings) -> list[str]:
        try:
            optimizer = optim.optimizer([torch.nn.Parameter(torch.zeros(1))])
        except Exception as error:  # noqa: BLE001 - the class is the user's: whatever it raises is a problem
            return [f"dpo.optimizer: {self.optimizer.target} refused its parameters: {one_line(error)}"]
        if not isinstance(optimizer, torch.optim.Optimizer) or "lr" not in optimizer.defaults:
            return [f"dpo.optimizer: {self.optimizer.target} is not a torch optimizer with a learning rate (lr)"]
        if not isinstance(_rate(optim, optimizer), float):
            return [f"dpo.lr_schedule: {self.lr_schedule.target}.rate(step, total_steps, peak_lr) gives no number"]
        return []


def _rate(optim: OptimSettings, optimizer: torch.optim.Optimizer) -> Any:
    try:
        return float(optim.lr_schedule.rate(0, 2, float(optimizer.defaults["lr"])))
    except Exception:  # noqa: BLE001 - a schedule of the user's that gives no rate: the caller reports it
        return None
