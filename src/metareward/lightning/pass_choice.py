"""The pass each iteration ends with (`dpo.choose_pass_by`): with several passes over an iteration's pairs, the actor
is evaluated after every pass and the iteration ends with the weights of the pass that scored highest (the first of
equals; a pass whose figure the evaluation could not measure is not chosen, and without any measured figure the last
pass stays), as the papers choose a checkpoint per iteration by their evaluations.

The measure is a figure of the run's own win-rate evaluation (`WinRateCallback.measure`: the same held-out prompts,
seeds and evaluator as the end-of-iteration evaluation, so the chosen pass's figures are the ones the iteration then
reports). The best pass's trained weights wait in host memory; after the last pass they are put back, before the
adapter checkpoint, the evaluations and the resume checkpoint of the iteration read them. Every rank decides on rank
0's figure, so all ranks end with the same weights. The optimizer's moments stay those of the last pass
(`dpo.reset_optimizer_each_iteration`, the default, forgets them before the next iteration anyway).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch

from metareward.lightning.eval_callbacks import WinRateCallback, eval_dir, finite_figure, publish_figures
from metareward.lightning.handoff import RunCallback, RunContext, Stage, iteration_of
from metareward.lightning.strategies import full_weights
from metareward.storage.artifacts import write_json

log = logging.getLogger(__name__)


class PassChoice(RunCallback):
    """Evaluates the actor after each of `passes` passes by `figure` of `evaluation` and ends the iteration with the
    best pass's weights."""

    stage = Stage.SAVE  # its end-of-iteration work is done by then: the last pass's batch put the chosen weights back

    def __init__(self, context: RunContext, evaluation: WinRateCallback, figure: str, passes: int) -> None:
        super().__init__(context)
        self.evaluation, self.figure, self.passes = evaluation, figure, passes
        self._scores: list[float | None] = []  # None: the figure was not measured after that pass
        self._best: dict[str, torch.Tensor] | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._scores, self._best = [], None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        per_pass, extra = divmod(int(trainer.num_training_batches), self.passes)
        if per_pass == 0 or extra or (batch_idx + 1) % per_pass:
            return  # not the end of a pass (or an iteration without pairs: nothing was trained to choose from)
        done, iteration = (batch_idx + 1) // per_pass, iteration_of(trainer)
        with full_weights(trainer):
            figures, _, _ = self.evaluation.measure(f"iteration {iteration}, pass {done}")
        score = trainer.strategy.broadcast(finite_figure(figures.get(self.figure)), src=0)
        self._scores.append(score)
        chosen = self._chosen()
        if score is not None and chosen == done:  # a new best
            self._best = trained_weights(pl_module)
        shown = "not measured" if score is None else f"{score:.4f}"
        log.info(
            "iteration %d, pass %d of %d: %s %s (best: pass %d)",
            iteration,
            done,
            self.passes,
            self.figure,
            shown,
            chosen,
        )
        if done == self.passes:
            if all(s is None for s in self._scores):
                log.warning(
                    "iteration %d: %s was not measured after any pass; the last pass is kept", iteration, self.figure
                )
            self._finish(trainer, pl_module, iteration, chosen)

    def _chosen(self) -> int:
        """The first pass of the highest measured figure (the last pass while none was measured), from 1."""
        measured_scores = [(s, -k) for k, s in enumerate(self._scores) if s is not None]
        return -max(measured_scores)[1] + 1 if measured_scores else len(self._scores)

    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule, iteration: int, chosen: int) -> None:
        if chosen != self.passes and self._best is not None:
            put_back(pl_module, self._best)
        self._best = None
        record = {"figure": self.figure, "scores": self._scores, "chosen_pass": chosen}
        if trainer.is_global_zero:
            write_json(eval_dir(self.context.run_dir, iteration) / "passes.json", record)
        figures = {"chosen_pass": float(chosen)}
        figures.update({f"pass_{k}_{self.figure}": v for k, v in enumerate(self._scores, start=1) if v is not None})
        publish_figures(trainer, self.context, "pass_choice", figures)


def trained_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A host-memory copy of every trained parameter (the adapters', or every weight with full fine-tuning)."""
    return {n: p.detach().to("cpu", copy=True) for n, p in module.named_parameters() if p.requires_grad}


def put_back(module: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """The trained parameters hold `saved` again."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name in saved:
                parameter.copy_(saved[name].to(parameter.device))
