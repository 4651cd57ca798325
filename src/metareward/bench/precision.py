"""What bfloat16 weights change in what the method reads, against float32 on the same model and the same inputs.

1. Scores: the float32 policy answers a fixed prompt set and judges every answer; then each dtype reads every
   judgment's score from probabilities (the cue after the judgment's explanation, as `score_mode=probability`
   does). Reported: the largest and mean difference of the expected scores, and how many of the length-controlled
   actor pairs (rho 0.4, as the study) the two dtypes' scores choose alike.
2. DPO: the same synthetic pairs, the same adapter initialisation and the same steps (the study's beta and
   learning rate) in each dtype, with reference log-probs computed in that dtype. Reported: both loss curves and
   reward accuracies step by step, and their largest difference.
Sampled tokens are not compared: where bfloat16 changes a probability, a sampled token may change, and each dtype
stays reproducible on its own (per-request seeds).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import numpy as np
import torch

from metareward.bench.common import emit, load_prompts, machine, say, synthetic_pairs
from metareward.bench.dpo import MAX_COMPLETION, MAX_PROMPT, batches, our_step
from metareward.bench.generate import engine_settings
from metareward.core.actor_pairs import ScoredResponse, select_actor_pairs
from metareward.core.losses import DPOLoss
from metareward.engine import phases
from metareward.engine.judging import choice_contexts, score_line
from metareward.generation.policy import Policy
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.chat import render_prompt
from metareward.model.loading import ModelSpec, load_model_and_tokenizer
from metareward.training.collate import PairCollator
from metareward.training.reference import reference_logprobs

DTYPES = ("float32", "bfloat16")
RHO = 0.4
BETA, LR = 0.1, 3e-4  # the study's: beta from conf/dpo, lr from conf/experiment/meta_reward_study.yaml
LORA = AdapterSpec(mode="shared", r=16, alpha=32, dropout=0.0)


def load(model_path: str, dtype: str) -> tuple[RoleAdapters, Any]:
    model, tokenizer = load_model_and_tokenizer(ModelSpec(model_path, dtype=dtype))
    torch.manual_seed(0)  # the same adapter initialisation in every dtype
    return RoleAdapters(model, LORA), tokenizer


def fixed_judgments(model_path: str, num_prompts: int, responses: int, judgments: int, max_new: int):
    """(prompts by id, responses, judgments) written by the float32 policy."""
    adapters, tokenizer = load(model_path, "float32")
    settings = engine_settings(responses, judgments, (max_new, max_new, max_new), (32, 32, 32))
    policy = Policy(adapters, tokenizer, progress=False)
    prompts = load_prompts(num_prompts)
    by_id = {p.id: p for p in prompts}
    responded = phases.respond(policy, settings, 1, prompts)
    judged = phases.judge(policy, settings, 1, by_id, responded.records)
    return by_id, responded.records, judged.records, settings


def expected_scores(model_path: str, dtype: str, by_id, responses, judgments, settings) -> np.ndarray:
    """Every judgment's expected score, read from `dtype`'s probabilities after the score cue."""
    adapters, tokenizer = load(model_path, dtype)
    policy = Policy(adapters, tokenizer, progress=False)
    prompt, line = settings.judge_prompt, score_line(settings.judge_prompt)
    text_of = {(r.prompt_id, r.index): r.text for r in responses}
    rendered = [
        render_prompt(
            tokenizer, prompt.render_judge(by_id[j.prompt_id].instruction, text_of[j.prompt_id, j.response_index])
        )
        for j in judgments
    ]
    contexts = choice_contexts(rendered, [j.text for j in judgments], "probability", line)
    read = policy.choose("judge", [contexts[i] for i in range(len(judgments))], line.choices, 16, "scores")
    return read @ np.asarray(prompt.score_values, dtype=np.float64)


def actor_pairs(responses, judgments, scores: np.ndarray) -> dict[str, tuple[int, int]]:
    per_response: dict[tuple[str, int], list[float]] = defaultdict(list)
    for judgment, score in zip(judgments, scores):
        per_response[judgment.prompt_id, judgment.response_index].append(float(score))
    per_prompt: dict[str, list[ScoredResponse]] = defaultdict(list)
    for r in responses:
        values = per_response.get((r.prompt_id, r.index))
        per_prompt[r.prompt_id].append(ScoredResponse(r.index, r.text, float(np.mean(values)) if values else None))
    selection = select_actor_pairs(per_prompt, RHO, "length_controlled")
    return {c.prompt_id: (c.chosen_index, c.rejected_index) for c in selection.items}


def dpo_curve(model_path: str, dtype: str, pairs, batch_size: int, steps: int) -> tuple[list[float], list[float]]:
    """(loss, reward accuracy) of each step, training one adapter on `pairs` from the same start."""
    adapters, tokenizer = load(model_path, dtype)
    model = adapters.model
    collator = PairCollator(tokenizer, MAX_PROMPT, MAX_COMPLETION)
    params = adapters.adapter_parameters()
    optimizer = torch.optim.AdamW(params, lr=LR)
    objective = DPOLoss(BETA)
    model.train()
    context = adapters.compute_context  # as the trainer's step and reference pass run
    scored = reference_logprobs(model, collator, pairs, batch_size=batch_size, progress=False, context=context)
    losses, accuracies = [], []
    for chunk in (batches(scored, batch_size) * steps)[:steps]:
        out = our_step(model, collator, objective, optimizer, params, chunk, context)
        losses.append(float(out.loss.detach()))
        accuracies.append(float((out.chosen_rewards > out.rejected_rewards).float().mean()))
    return losses, accuracies


def main(
    model_path: str,
    as_json: bool,
    num_prompts: int = 8,
    responses: int = 4,
    judgments: int = 2,
    max_new: int = 64,
    num_pairs: int = 16,
    batch_size: int = 4,
    steps: int = 8,
    quick: bool = False,
) -> dict[str, Any]:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    say(f"precision: {num_prompts} prompts x {responses} answers x {judgments} judgments; {steps} DPO steps")
    by_id, answered, judged, settings = fixed_judgments(model_path, num_prompts, responses, judgments, max_new)
    scores = {d: expected_scores(model_path, d, by_id, answered, judged, settings) for d in DTYPES}
    gap = np.abs(scores["bfloat16"] - scores["float32"])
    chosen = {d: actor_pairs(answered, judged, scores[d]) for d in DTYPES}
    same = sum(chosen["bfloat16"].get(p) == pick for p, pick in chosen["float32"].items())
    say(f"  scores: largest difference {gap.max():.4f}, mean {gap.mean():.4f} over {len(gap)} judgments")
    say(
        f"  actor pairs: {same} of {len(chosen['float32'])} float32 pairs chosen alike ({len(chosen['bfloat16'])} in bf16)"
    )
    pairs = synthetic_pairs(num_pairs, (1, 2) if quick else (5, 9), judge_pairs=not quick)
    curves = {d: dpo_curve(model_path, d, pairs, batch_size, steps) for d in DTYPES}
    loss_gap = max(abs(a - b) for a, b in zip(curves["float32"][0], curves["bfloat16"][0]))
    for d in DTYPES:
        say(f"  {d} loss: {[round(x, 4) for x in curves[d][0]]} accuracy: {curves[d][1]}")
    say(f"  DPO loss: largest difference {loss_gap:.4f} over {steps} steps")
    return emit(
        {
            "benchmark": "precision",
            "model": model_path,
            "judgments": len(gap),
            "score_difference_max": float(gap.max()),
            "score_difference_mean": float(gap.mean()),
            "actor_pairs_float32": len(chosen["float32"]),
            "actor_pairs_bfloat16": len(chosen["bfloat16"]),
            "actor_pairs_alike": same,
            "dpo_loss": {d: curves[d][0] for d in DTYPES},
            "dpo_reward_accuracy": {d: curves[d][1] for d in DTYPES},
            "dpo_loss_difference_max": loss_gap,
            "machine": machine(),
        },
        as_json,
    )
