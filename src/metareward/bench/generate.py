"""Data-engine throughput: our respond + judge + meta-judge phases against one `model.generate` call per request.

Ours: `engine.phases` on a fixed prompt set with fixed K, N, sampling settings and batch sizes (score and verdict
read in the configured mode, hybrid by default, so ours also pays for the probability reads). Anchor: the same
requests (identical rendered prompts, same role adapter, same temperature / top_p / max_new_tokens), each made
with its own batch-1 `generate` call, judged in parse mode (no extra reads). To keep the run short the anchor
times an evenly spread sample of each role's requests and its total is extrapolated as
    sum over roles of (requests of that role) x (mean seconds per sampled request of that role);
`anchor_sampled_requests` says how many were timed. ratio = anchor seconds / our seconds for the whole set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from metareward.bench.common import Stopwatch, emit, load_prompts, machine, peak_rss_mb, say
from metareward.engine import phases
from metareward.engine.policy import Policy
from metareward.engine.settings import EngineSettings, RoleSettings
from metareward.generation.sampler import GenerationRequest, SamplingSettings
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.chat import encode_text
from metareward.model.loading import ModelSpec, load_model_and_tokenizer


@dataclass
class RecordingPolicy(Policy):
    """A Policy that remembers every generation request (role, prompt, settings) and the tokens it produced."""

    log: list[tuple[str, GenerationRequest, SamplingSettings]] = field(default_factory=list)
    generated_tokens: int = 0

    def generate(self, role, requests, settings, desc, cue=None):
        self.log.extend((role, request, settings.sampling) for request in requests)
        results = super().generate(role, requests, settings, desc, cue)
        self.generated_tokens += sum(g.num_tokens for g in results)
        return results


def engine_settings(
    num_responses: int, num_judgments: int, max_new: Sequence[int], batch: Sequence[int]
) -> EngineSettings:
    def role(i: int) -> RoleSettings:
        return RoleSettings(SamplingSettings(0.8, 0.95, max_new[i]), batch[i])

    return EngineSettings(
        seed=0,
        prompts_per_iteration=1,
        num_responses=num_responses,
        num_judgments=num_judgments,
        actor=role(0),
        judge=role(1),
        meta_judge=role(2),
        progress=False,
    )


def run_ours(policy: RecordingPolicy, settings: EngineSettings, prompts) -> dict[str, float]:
    watch = Stopwatch()
    by_id = {p.id: p for p in prompts}
    with watch("respond"):
        responded = phases.respond(policy, settings, 1, prompts)
    with watch("judge"):
        judged = phases.judge(policy, settings, 1, by_id, responded.records)
    with watch("meta_judge"):
        targets, _ = phases.meta_targets(by_id, responded.records, judged.records)
        phases.meta_judge(policy, settings, 1, targets)
    return watch.seconds


def anchor_request(model, tokenizer, prompt: str, sampling: SamplingSettings, seed: int) -> tuple[float, int]:
    """(seconds, new tokens) of one batch-1 `generate` call."""
    ids = torch.tensor([encode_text(tokenizer, prompt)])
    torch.manual_seed(seed)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=0,
            max_new_tokens=sampling.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
    seconds = time.perf_counter() - start
    new = out[0, ids.shape[1] :]
    return seconds, int((new != tokenizer.eos_token_id).sum())


def run_anchor(adapters: RoleAdapters, tokenizer, log, per_role: int) -> dict[str, Any]:
    """Time an evenly spread sample of each role's requests; extrapolate the total per role."""
    total, sampled, tokens, per_role_seconds = 0.0, 0, 0, {}
    for role in ("actor", "judge", "meta_judge"):
        entries = [(request, sampling) for r, request, sampling in log if r == role]
        if not entries:
            continue
        step = max(len(entries) // per_role, 1)
        chosen = entries[::step][:per_role]
        with adapters.role(role) as model:
            model.eval()
            timings = [anchor_request(model, tokenizer, q.prompt, s, q.seed) for q, s in chosen]
        mean = sum(t for t, _ in timings) / len(timings)
        per_role_seconds[role] = mean
        total += mean * len(entries)
        tokens += round(sum(n for _, n in timings) / len(timings) * len(entries))
        sampled += len(chosen)
    return {"seconds": total, "sampled": sampled, "tokens_estimate": tokens, "per_request": per_role_seconds}


def main(
    model_path: str,
    num_prompts: int,
    num_responses: int,
    num_judgments: int,
    max_new: Sequence[int],
    batch: Sequence[int],
    anchor_per_role: int,
    as_json: bool,
) -> dict[str, Any]:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    model, tokenizer = load_model_and_tokenizer(ModelSpec(model_path))
    adapters = RoleAdapters(model, AdapterSpec())
    settings = engine_settings(num_responses, num_judgments, max_new, batch)
    prompts = load_prompts(num_prompts)
    policy = RecordingPolicy(adapters, tokenizer, progress=False)
    say(
        f"generate: {num_prompts} prompts, K={num_responses}, N={num_judgments}, max_new_tokens={list(max_new)}, "
        f"batch sizes={list(batch)}"
    )
    phase_seconds = run_ours(policy, settings, prompts)
    ours = sum(phase_seconds.values())
    requests = len(policy.log)
    say(f"  ours: {requests} requests, {policy.generated_tokens} tokens in {ours:.1f} s {phase_seconds}")
    anchor = run_anchor(adapters, tokenizer, policy.log, anchor_per_role)
    say(f"  anchor: {anchor['sampled']} sampled requests, estimated {anchor['seconds']:.1f} s for all {requests}")
    return emit(
        {
            "benchmark": "generate",
            "model": model_path,
            "requests": requests,
            "requests_by_role": {
                role: sum(r == role for r, _, _ in policy.log) for role in ("actor", "judge", "meta_judge")
            },
            "ours_seconds": ours,
            "ours_phase_seconds": phase_seconds,
            "ours_requests_per_s": requests / ours,
            "ours_tokens": policy.generated_tokens,
            "ours_tokens_per_s": policy.generated_tokens / ours,
            "anchor_seconds": anchor["seconds"],
            "anchor_requests_per_s": requests / anchor["seconds"],
            "anchor_tokens_per_s": anchor["tokens_estimate"] / anchor["seconds"],
            "anchor_sampled_requests": anchor["sampled"],
            "anchor_seconds_per_request": anchor["per_request"],
            "ratio": anchor["seconds"] / ours,
            "anchor": "transformers generate, batch 1, one call per request",
            "settings": {
                "prompts": num_prompts,
                "K": num_responses,
                "N": num_judgments,
                "max_new_tokens": list(max_new),
                "batch_sizes": list(batch),
                "score_mode": settings.score_mode,
            },
            "peak_rss_mb": peak_rss_mb(),
            "machine": machine(),
        },
        as_json,
    )
