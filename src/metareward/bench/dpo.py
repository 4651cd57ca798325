"""DPO training throughput: our reference pass + DPO steps against TRL's DPOTrainer on the same pairs.

Both sides: the same base model, one LoRA adapter (r, alpha, q/k/v/o from conf/model/smollm2_135m.yaml), the same
pairs in the same batches (each of one kind, actor or judge, as the trainer plans its steps; TRL told to keep the
dataset's order), batch size, beta, learning rate and gradient clipping, on CPU, at the same precision: the base
weights in `--dtype` (auto: what model.dtype=auto picks here) with float32 adapters, TRL told `bf16=True` when that
is bfloat16. TRL also runs with float32 weights, so the ratio against the float32 anchor is printed beside the one
against the anchor of our precision. Our time INCLUDES computing the reference log-probs of every timed pair (TRL
computes them inside each step with the adapter disabled). One warm-up step per side is excluded from timing.
Throughput: pairs/s and tokens/s (prompt + completion tokens of chosen and rejected rows); ratio = our pairs/s over
TRL's; share of peak = model FLOPs (bench/peak.py: the reference pass plus a training pass per token) over seconds,
over this machine's measured matrix-product rate in our dtype. The FLOPs are those of the pairs' tokens; ours runs
each shared prompt once for its two rows, so `share_of_peak_computed` counts only the tokens it runs.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch

from metareward.bench.common import emit, machine, peak_rss_mb, say, synthetic_pairs
from metareward.bench.peak import forward_flops_per_token, matmul_peak_gflops, share_of_peak, training_flops_per_token
from metareward.core.losses import DPOLoss
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.chat import render_prompt
from metareward.model.loading import ModelSpec, load_model_and_tokenizer
from metareward.model.logprobs import pair_logprobs
from metareward.storage.records import PairRecord
from metareward.training.collate import PairCollator
from metareward.training.reference import reference_logprobs

BETA, LR, MAX_PROMPT, MAX_COMPLETION = 0.1, 2e-4, 512, 256
LORA = AdapterSpec(mode="shared", r=16, alpha=32, dropout=0.0)


def batches(pairs: Sequence[PairRecord], size: int) -> list[list[PairRecord]]:
    return [list(pairs[i : i + size]) for i in range(0, len(pairs), size)]


def kind_batches_order(pairs: Sequence[PairRecord]) -> list[PairRecord]:
    """`pairs` with each kind's pairs together (actor, then judge), so consecutive batches hold one kind each, as
    the trainer's steps do (each kind trains its own adapter): mixed batches pad instruction rows to judge prompts.
    Where a kind's count is not a multiple of the batch size (the defaults' 4 and 4 are), one batch holds the end of
    one kind and the start of the next: TRL's batches are all of one size."""
    return sorted(pairs, key=lambda pair: pair.kind)


def pair_tokens(collator: PairCollator, pairs: Sequence[PairRecord]) -> int:
    """Real (unpadded) tokens in the chosen and rejected rows of `pairs`."""
    return sum(int(collator([pair])["attention_mask"].sum()) for pair in pairs)


def shared_prompt_tokens(collator: PairCollator, pairs: Sequence[PairRecord]) -> int:
    """Real tokens our passes run: each prompt once, then both completions (`pair_logprobs` shares the prompt)."""
    return sum(sum(len(part) for part in collator.encode(pair)) for pair in pairs)


def dpo_output(model, collator: PairCollator, loss: DPOLoss, chunk: list[PairRecord]) -> Any:
    """The loss module's output on `chunk` (reference log-probs already set): loss and implicit rewards."""
    batch = collator(chunk)
    logps, counts = pair_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    chosen, rejected = logps.chunk(2)
    ref_chosen, ref_rejected = batch["ref_logps"].to(logps.dtype).chunk(2)
    return loss(chosen, rejected, ref_chosen, ref_rejected, *counts.chunk(2))


def our_step(
    model, collator: PairCollator, loss: DPOLoss, optimizer, params, chunk: list[PairRecord], context=nullcontext
) -> Any:
    """One DPO step on `chunk` (reference log-probs already set), its forward pass in `context()` as the trainer's
    step runs it; the loss module's output, detached by the caller."""
    with context():
        out = dpo_output(model, collator, loss, chunk)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    return out


def run_ours(
    spec: ModelSpec, warmup: list[PairRecord], timed: list[PairRecord], batch_size: int
) -> tuple[float, float]:
    """(seconds for reference log-probs of `timed` plus one DPO step per batch of it (after one warm-up step),
    model FLOPs per token of that work)."""
    model, tokenizer = load_model_and_tokenizer(spec)
    adapters = RoleAdapters(model, LORA)
    peft = adapters.model
    collator = PairCollator(tokenizer, MAX_PROMPT, MAX_COMPLETION)
    params = adapters.adapter_parameters()
    optimizer = torch.optim.AdamW(params, lr=LR)
    loss = DPOLoss(BETA)
    peft.train()
    context = adapters.compute_context  # as the trainer's step and reference pass run (trainer=cpu: 32-true)
    scored = reference_logprobs(peft, collator, warmup, batch_size=batch_size, progress=False, context=context)
    our_step(peft, collator, loss, optimizer, params, scored, context)
    start = time.perf_counter()
    scored = reference_logprobs(peft, collator, timed, batch_size=batch_size, progress=False, context=context)
    for chunk in batches(scored, batch_size):
        our_step(peft, collator, loss, optimizer, params, chunk, context)
    return time.perf_counter() - start, forward_flops_per_token(peft) + training_flops_per_token(peft)


def run_trl(spec: ModelSpec, warmup: list[PairRecord], timed: list[PairRecord], batch_size: int) -> float:
    """Seconds TRL's DPOTrainer spends on the steps after its first (warm-up) step."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    model, tokenizer = load_model_and_tokenizer(spec)
    rows = [
        {"prompt": render_prompt(tokenizer, p.prompt), "chosen": p.chosen, "rejected": p.rejected}
        for p in list(warmup) + list(timed)
    ]
    marks: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(
            output_dir=out,
            per_device_train_batch_size=batch_size,
            max_steps=1 + len(batches(timed, batch_size)),
            learning_rate=LR,
            beta=BETA,
            max_grad_norm=1.0,
            lr_scheduler_type="constant",
            warmup_steps=0,
            max_length=MAX_PROMPT + MAX_COMPLETION,
            use_cpu=True,
            bf16=spec.resolved_dtype().name == "bfloat16",
            fp16=False,
            gradient_checkpointing=False,
            report_to=[],
            save_strategy="no",
            eval_strategy="no",
            logging_steps=10_000,
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=0,
            train_sampling_strategy="sequential",  # the batches `batches` makes for our side
        )
        lora = LORA.lora_config()
        trainer = DPOTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=[StepClock()],
        )
        trainer.train()
    return marks[-1] - marks[0]


def main(
    model_path: str,
    num_pairs: int,
    batch_size: int,
    as_json: bool,
    rounds: int = 1,
    quick: bool = False,
    dtype: str = "auto",
) -> dict[str, Any]:
    os.environ.setdefault("WANDB_DISABLED", "true")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    pairs = synthetic_pairs(num_pairs + batch_size, (1, 2) if quick else (5, 9), judge_pairs=not quick)
    warmup, timed = pairs[:batch_size], kind_batches_order(pairs[batch_size:])
    spec, float32 = ModelSpec(model_path, dtype=dtype), ModelSpec(model_path, dtype="float32")
    precision = spec.resolved_dtype()
    _, tokenizer = load_model_and_tokenizer(spec)
    collator = PairCollator(tokenizer, MAX_PROMPT, MAX_COMPLETION)
    tokens, computed = pair_tokens(collator, timed), shared_prompt_tokens(collator, timed)
    say(
        f"dpo: {len(timed)} timed pairs ({tokens} tokens), batch {batch_size}, LoRA r={LORA.r}, {rounds} round(s), "
        f"weights in {precision.name} ({precision.reason})"
    )
    ours, trl, trl_float32 = [], [], []
    flops_per_token = 0.0
    for r in range(rounds):  # interleaved, so load changes hit every side
        seconds, flops_per_token = run_ours(spec, warmup, timed, batch_size)
        ours.append(seconds)
        say(f"  round {r + 1}: ours {ours[-1]:.1f} s")
        trl.append(run_trl(spec, warmup, timed, batch_size))
        say(f"  round {r + 1}: TRL ({precision.name}) {trl[-1]:.1f} s")
        if precision.name != "float32":
            trl_float32.append(run_trl(float32, warmup, timed, batch_size))
            say(f"  round {r + 1}: TRL (float32) {trl_float32[-1]:.1f} s")
    ours_s, trl_s = min(ours), min(trl)
    trl_float32_s = min(trl_float32) if trl_float32 else trl_s
    peak = matmul_peak_gflops(precision.torch)
    share = share_of_peak(flops_per_token * tokens, ours_s, peak)
    computed_share = share_of_peak(flops_per_token * computed, ours_s, peak)
    say(
        f"  ours reached {share:.1%} of this machine's {precision.name} matrix-product peak ({peak:.0f} GFLOP/s); "
        f"{computed_share:.1%} counting only the {computed} tokens it runs (each prompt once)"
    )
    return emit(
        {
            "benchmark": "dpo",
            "model": model_path,
            "dtype": precision.name,
            "pairs": len(timed),
            "batch_size": batch_size,
            "tokens": tokens,
            "ours_seconds": ours_s,
            "anchor_seconds": trl_s,
            "anchor_float32_seconds": trl_float32_s,
            "ours_pairs_per_s": len(timed) / ours_s,
            "anchor_pairs_per_s": len(timed) / trl_s,
            "ours_tokens_per_s": tokens / ours_s,
            "anchor_tokens_per_s": tokens / trl_s,
            "ratio": trl_s / ours_s,
            "ratio_vs_float32_anchor": trl_float32_s / ours_s,
            "anchor": f"trl.DPOTrainer ({precision.name})",
            "model_gflops_per_token": flops_per_token / 1e9,
            "peak_gflops": peak,
            "share_of_peak": share,
            "tokens_computed": computed,
            "share_of_peak_computed": computed_share,
            "rounds": rounds,
            "peak_rss_mb": peak_rss_mb(),
            "machine": machine(),
        },
        as_json,
    )
