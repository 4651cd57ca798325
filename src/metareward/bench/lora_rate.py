"""Which LoRA learning rate moves DPO as far as full fine-tuning at the papers' rates: a measurement for the LoRA
variants of the paper experiments, which the papers (full fine-tuning) give no rate for.

The same pairs, the same start and the same steps: one epoch of DPO (beta 0.1, AdamW, gradient clipping at 1, as
the loop trains) with every weight trained at each paper rate (5e-6: Meta-Rewarding; 1e-6: Self-Rewarding), and
with one LoRA adapter as the paper configs hold it (r 16, alpha 32, all seven projections) at a ladder of rates.
After the epoch each run's DPO reward margin on the pairs, beta * (log pi/pi_ref(chosen) - log pi/pi_ref(rejected))
averaged, and its reward accuracy are read without dropout. The LoRA rate that matches a full rate's margin is
interpolated on the ladder in log-log space. Float32 weights on both sides, so the rounding of bf16 updates plays no
part. Measured on the embedded 135M model: how the ratio carries to 8B or 70B weights is not measured here.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from metareward.bench.common import emit, machine, say, synthetic_pairs
from metareward.bench.dpo import MAX_COMPLETION, MAX_PROMPT, batches, dpo_output, our_step
from metareward.core.losses import DPOLoss
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.loading import ModelSpec, load_model_and_tokenizer
from metareward.storage.records import PairRecord
from metareward.training.collate import PairCollator
from metareward.training.reference import reference_logprobs

BETA = 0.1
PAPER_RATES = {"meta_reward_paper": 5e-6, "self_reward_paper": 1e-6}  # full fine-tuning (docs/papers.md)
LORA_RATES = (5e-6, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3)
SEVEN = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA = AdapterSpec(mode="shared", r=16, alpha=32, dropout=0.0, target_modules=SEVEN)


def one_epoch(model_path: str, finetune: str, lr: float, pairs: Sequence[PairRecord], batch_size: int) -> dict:
    """DPO margin and reward accuracy after one epoch on `pairs` from the model's own start."""
    model, tokenizer = load_model_and_tokenizer(ModelSpec(model_path, dtype="float32"))
    torch.manual_seed(0)  # the same adapter initialisation in every LoRA run
    if finetune == "lora":
        adapters = RoleAdapters(model, LORA)
        net, params = adapters.model, adapters.adapter_parameters()
    else:
        net, params = model, [p.requires_grad_(True) for p in model.parameters()]
    collator = PairCollator(tokenizer, MAX_PROMPT, MAX_COMPLETION)
    net.eval()
    scored = reference_logprobs(net, collator, pairs, batch_size=batch_size, progress=False)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    loss = DPOLoss(BETA)
    started = time.perf_counter()
    net.train()
    for chunk in batches(scored, batch_size):
        our_step(net, collator, loss, optimizer, params, chunk)
    net.eval()
    margins: list[float] = []
    with torch.no_grad():
        for chunk in batches(scored, batch_size):
            out = dpo_output(net, collator, loss, chunk)
            margins += (out.chosen_rewards - out.rejected_rewards).tolist()
    return {
        "finetune": finetune,
        "lr": lr,
        "margin": float(np.mean(margins)),
        "reward_accuracy": float(np.mean([m > 0 for m in margins])),
        "seconds": time.perf_counter() - started,
    }


def matching_rate(ladder: Sequence[dict], margin: float) -> float | None:
    """The LoRA rate whose margin would equal `margin`, interpolated between the two ladder runs around it in
    log(rate) against log(margin); None when the ladder does not reach it (or a margin is not positive)."""
    points = [(r["lr"], r["margin"]) for r in ladder]
    for (low, low_margin), (high, high_margin) in pairwise(points):
        if min(low_margin, high_margin, margin) <= 0 or not low_margin <= margin <= high_margin:
            continue
        if high_margin == low_margin:
            return low
        share = (math.log(margin) - math.log(low_margin)) / (math.log(high_margin) - math.log(low_margin))
        return math.exp(math.log(low) + share * (math.log(high) - math.log(low)))
    return None


def main(
    model_path: str, as_json: bool, num_pairs: int = 24, batch_size: int = 4, quick: bool = False
) -> dict[str, Any]:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    pairs = synthetic_pairs(num_pairs, (1, 2) if quick else (2, 4), judge_pairs=not quick)
    rates = LORA_RATES[:2] if quick else LORA_RATES
    say(f"lora-rate: one DPO epoch on {num_pairs} pairs (batch {batch_size}), float32, {model_path}")
    full = {name: one_epoch(model_path, "full", lr, pairs, batch_size) for name, lr in PAPER_RATES.items()}
    for name, run in full.items():
        say(f"  full {run['lr']:.0e} ({name}): margin {run['margin']:.4f}, accuracy {run['reward_accuracy']:.2f}")
    ladder = []
    for lr in rates:
        ladder.append(one_epoch(model_path, "lora", lr, pairs, batch_size))
        say(f"  lora {lr:.0e}: margin {ladder[-1]['margin']:.4f}, accuracy {ladder[-1]['reward_accuracy']:.2f}")
    matches = {name: matching_rate(ladder, run["margin"]) for name, run in full.items()}
    for name, rate in matches.items():
        shown = f"{rate:.1e}" if rate is not None else "beyond the ladder"
        say(f"  LoRA rate matching {name}'s full fine-tuning margin: {shown}")
    return emit(
        {
            "benchmark": "lora_rate",
            "model": model_path,
            "pairs": num_pairs,
            "batch_size": batch_size,
            "full": full,
            "lora": ladder,
            "matching_lora_rate": matches,
            "machine": machine(),
        },
        as_json,
    )
