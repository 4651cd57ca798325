"""Scoring preference pairs with the reference model M_t once, before DPO, so training needs no second model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace

import torch
from torch import nn
from tqdm.auto import tqdm

from metareward.model.logprobs import pair_logprobs
from metareward.storage.records import PairRecord
from metareward.training.collate import PairCollator


def reference_logprobs(
    model: nn.Module,
    collator: PairCollator,
    pairs: Sequence[PairRecord],
    batch_size: int = 8,
    desc: str = "reference log-probs",
    progress: bool = True,
    context: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> list[PairRecord]:
    """Copies of `pairs` with `ref_chosen_logp` / `ref_rejected_logp` set to `model`'s summed completion log-probs.

    The values are exactly what `pair_logprobs` gives on the collator's batches, so the DPO log-ratios
    compare like with like. The model runs in eval mode (no dropout) under `torch.inference_mode()`; its
    training flag is restored afterwards.

    `context` makes the context manager each forward pass runs in. It must be the one the training step's
    forward runs in (under Lightning, `trainer.precision_plugin.train_step_context`: autocast for `bf16-mixed`,
    nothing for `32-true`): DPO's implicit rewards beta * (log pi_theta - log pi_ref) are zero before the first
    update only when policy and reference are computed with the same arithmetic (Rafailov et al. 2023, Eq. 7).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scored: list[PairRecord] = []
    try:
        with torch.inference_mode(), tqdm(total=len(pairs), desc=desc, unit="pair", disable=not progress) as bar:
            for start in range(0, len(pairs), batch_size):
                chunk = pairs[start : start + batch_size]
                batch = collator(chunk)
                with context():
                    logps, _ = pair_logprobs(
                        model,
                        batch["input_ids"].to(device),
                        batch["attention_mask"].to(device),
                        batch["completion_mask"].to(device),
                    )
                chosen, rejected = logps.double().cpu().chunk(2)
                scored.extend(
                    replace(pair, ref_chosen_logp=float(c), ref_rejected_logp=float(r))
                    for pair, c, r in zip(chunk, chosen.tolist(), rejected.tolist())
                )
                bar.update(len(chunk))
    finally:
        model.train(was_training)
    return scored
