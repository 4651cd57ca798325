"""Supervised fine-tuning of one LoRA adapter with a masked negative log-likelihood on completion tokens.

For a batch of examples with completion tokens y_1..y_n after prompt x,
    L = - (sum over examples and completion positions t of log p(y_t | x, y_<t)) / (number of completion tokens),
the token-averaged NLL of standard SFT; prompt and padding tokens carry no loss. The log-probs come from
`completion_logprobs`, the same function DPO uses, so both see identical positions and masks.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metareward.model.adapters import RoleAdapters
from metareward.model.logprobs import completion_logprobs
from metareward.schema.rules import COUNT, NON_NEGATIVE, POSITIVE, Number, setting
from metareward.sft.collate import SFTCollator
from metareward.sft.formatting import SFTExample


@dataclass(frozen=True)
class SFTOptim:
    """How the warm start trains (its keys sit in the `warm_start` group); `seed` is the run's."""

    epochs: int = setting("epochs", COUNT, default=1)
    lr: float = setting("lr", POSITIVE, default=1e-4)
    batch_size: int = setting("batch_size", COUNT, default=4)
    weight_decay: float = setting("weight_decay", NON_NEGATIVE, default=0.0)
    max_grad_norm: float | None = setting("max_grad_norm", Number(float, 0, low_open=True, nullable=True), default=1.0)
    # stop early after this many optimizer steps per adapter (smoke tests)
    max_steps: int | None = setting("max_steps", Number(int, 1, nullable=True), default=None)
    seed: int = 0


def masked_nll(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """Token-averaged NLL of the completion tokens (see the module docstring); a scalar with gradients."""
    summed, counts = completion_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    return -summed.sum() / counts.sum().clamp(min=1)


def batches(examples: Sequence[SFTExample], batch_size: int, epoch: int, seed: int) -> list[list[SFTExample]]:
    """One epoch's batches of a seeded shuffle of `examples` (a new order each epoch)."""
    order = list(range(len(examples)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [[examples[i] for i in order[start : start + batch_size]] for start in range(0, len(order), batch_size)]


def train_adapter(
    adapters: RoleAdapters, role: str, examples: Sequence[SFTExample], collator: SFTCollator, optim: SFTOptim
) -> dict[str, float | int]:
    """Train the adapter serving `role` on `examples`; only that adapter's parameters change.

    Returns the number of examples and steps, the first and last batch losses, and the mean loss of the last epoch.
    """
    model = adapters.model
    device = next(model.parameters()).device
    was_training = model.training
    started = time.perf_counter()
    losses: list[float] = []
    epoch_losses: list[float] = []
    with adapters.role(role):
        parameters = [p for p in model.parameters() if p.requires_grad]  # PEFT leaves only the active adapter trainable
        optimizer = torch.optim.AdamW(parameters, lr=optim.lr, weight_decay=optim.weight_decay)
        model.train()
        try:
            for epoch in range(optim.epochs):
                epoch_losses = []
                for chunk in batches(examples, optim.batch_size, epoch, optim.seed):
                    if optim.max_steps is not None and len(losses) >= optim.max_steps:
                        break
                    batch = {key: value.to(device) for key, value in collator(chunk).items()}
                    with adapters.compute_context():  # the DPO step's arithmetic (model.adapters.compute_dtype)
                        loss = masked_nll(model, batch)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if optim.max_grad_norm is not None:  # null: no clipping
                        torch.nn.utils.clip_grad_norm_(parameters, optim.max_grad_norm)
                    optimizer.step()
                    losses.append(float(loss.detach()))
                    epoch_losses.append(losses[-1])
        finally:
            model.train(was_training)
    return {
        "examples": len(examples),
        "steps": len(losses),
        "first_loss": losses[0] if losses else math.nan,
        "last_loss": losses[-1] if losses else math.nan,
        "last_epoch_loss": sum(epoch_losses) / len(epoch_losses) if epoch_losses else math.nan,
        "seconds": time.perf_counter() - started,
    }
