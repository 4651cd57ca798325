"""DPO step memory and throughput of an 8B-class model on one GPU, with LoRA (bf16) and with 4-bit QLoRA.

The weights are random in the Llama-3-8B shape (the GPU machines cannot download models): speed and memory depend
on the shape, not on the values. Each variant times `steps` DPO steps after one warm-up step; a step is what our
trainer does per batch: the reference log-probs of the batch (adapters as they were, no gradients), the policy
log-probs with each prompt encoded once for its chosen and rejected rows, the DPO loss, backward, clipping and an
AdamW step on the adapters.

Model FLOPs utilisation: with N the parameters used per token (all but the input embeddings) and T the tokens a
step processes (B prompts of P tokens plus 2B completions of C tokens), a step does 6NT model FLOPs: 2NT for the
reference forward, 2NT for the policy forward and 2NT for the input gradients of the backward (frozen weights get
no weight gradient; the adapters' share is negligible). MFU = 6NT / step seconds / the GPU's dense bf16 peak.
`--quick` runs a tiny shape in float32 on any device, to check the code path.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch

from metareward.bench.common import emit, machine, say
from metareward.core.losses import DPOLoss
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.compat import enable_activation_checkpointing
from metareward.model.logprobs import pair_logprobs

LLAMA3_8B = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
}
TINY = {
    **LLAMA3_8B,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 512,
}
LORA = AdapterSpec(
    mode="shared",
    r=16,
    alpha=32,
    target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
)
# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, by a substring of the device name.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


class ScaleBenchError(RuntimeError):
    """The benchmark cannot run here; the message says why."""


@dataclass(frozen=True)
class StepShape:
    pairs: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def tokens(self) -> int:
        return self.pairs * (self.prompt_tokens + 2 * self.completion_tokens)


def dpo_batch(shape: StepShape, vocab: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Random token ids laid out as our collator lays out a DPO batch: chosen rows, then rejected, left-padded."""
    generator = torch.Generator().manual_seed(0)
    prompts = torch.randint(3, vocab, (shape.pairs, shape.prompt_tokens), generator=generator)
    completions = torch.randint(3, vocab, (2 * shape.pairs, shape.completion_tokens), generator=generator)
    input_ids = torch.cat([prompts.repeat(2, 1), completions], dim=1)
    completion_mask = torch.zeros_like(input_ids)
    completion_mask[:, shape.prompt_tokens :] = 1
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "completion_mask": completion_mask.to(device),
    }


def build_model(
    dims: dict[str, int | float], dtype: torch.dtype, device: torch.device, quantize: bool, checkpointing: bool
):
    """A random model of the given shape; with `quantize`, saved once and loaded back through our 4-bit loader."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**dims, attn_implementation="sdpa")
    if not quantize:
        with torch.device(device):
            model = LlamaForCausalLM(config).to(dtype)
        if checkpointing:
            enable_activation_checkpointing(model)
            model.enable_input_require_grads()
        return model, None
    from metareward.model.loading import ModelSpec, load_model_and_tokenizer
    from metareward.model.tiny import build_tiny

    folder = tempfile.TemporaryDirectory()
    with torch.device(device):
        LlamaForCausalLM(config).to(dtype).save_pretrained(folder.name)
    build_tiny()[1].save_pretrained(folder.name)  # the loader wants a tokenizer; the batches are random ids anyway
    torch.cuda.empty_cache()
    spec = ModelSpec(folder.name, dtype="bfloat16", quantization="4bit", gradient_checkpointing=checkpointing)
    return load_model_and_tokenizer(spec)[0], folder


def time_steps(model, shape: StepShape, steps: int) -> dict[str, float]:
    """Seconds per DPO step (reference pass included) and the peak memory of the steps, after one warm-up step."""
    device = next(model.parameters()).device
    adapters = RoleAdapters(model, LORA)
    params = adapters.adapter_parameters()
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    loss_fn = DPOLoss(0.1)
    batch = dpo_batch(shape, model.config.vocab_size, device)
    peft = adapters.model
    peft.train()

    def step() -> float:
        with torch.inference_mode():
            reference, _ = pair_logprobs(peft, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        logps, counts = pair_logprobs(peft, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        out = loss_fn(*logps.chunk(2), *reference.clone().to(logps.dtype).chunk(2), *counts.chunk(2))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        return float(out.loss.detach())

    cuda = device.type == "cuda"
    step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    losses = [step() for _ in range(steps)]
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return {
        "step_seconds": seconds,
        "pairs_per_s": shape.pairs / seconds,
        "tokens_per_s": shape.tokens / seconds,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if cuda else None,
        "loss": losses[-1],
        "trainable_parameters": sum(p.numel() for p in params),
    }


def model_flops_per_token(model) -> float:
    """6N: N = parameters used per token (the input embedding is a lookup, not a matrix product)."""
    embedding = model.get_input_embeddings().weight.numel()
    base = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n) - embedding
    if getattr(model.config, "tie_word_embeddings", False):
        base += embedding  # the tied output projection is a matrix product
    if hasattr(model, "is_loaded_in_4bit") and model.is_loaded_in_4bit:
        base *= 2  # bitsandbytes stores two 4-bit weights per uint8 element
    return 6.0 * base


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def main(quick: bool, shape: StepShape, steps: int, checkpointing: bool, as_json: bool) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    if not quick and not cuda:
        raise ScaleBenchError(
            "the scale benchmark needs a CUDA GPU (an 8B model in bf16 takes 16 GB); "
            "--quick checks its code path on a tiny model anywhere"
        )
    device = torch.device("cuda" if cuda else "cpu")
    dims, dtype = (TINY, torch.float32) if quick else (LLAMA3_8B, torch.bfloat16)
    variants = ["lora"]
    skipped = {}
    if cuda and not quick:
        try:
            import bitsandbytes  # noqa: F401

            variants.append("qlora")
        except ImportError:
            skipped["qlora"] = "bitsandbytes is not installed (pip install 'metareward[gpu]')"
    peak = peak_flops(device)
    say(
        f"scale: {'tiny' if quick else 'Llama-3-8B'} shape, random weights, {shape}, {steps} step(s), "
        f"gradient checkpointing {'on' if checkpointing else 'off'}, device {device}"
    )
    results: dict[str, Any] = {}
    for variant in variants:
        model, folder = build_model(dims, dtype, device, variant == "qlora", checkpointing)
        figures = time_steps(model, shape, steps)
        flops = model_flops_per_token(model) * shape.tokens
        figures["model_tflops_per_step"] = flops / 1e12
        figures["mfu"] = flops / figures["step_seconds"] / peak if peak else None
        results[variant] = figures
        say(
            f"  {variant}: {figures['step_seconds']:.3f} s/step, {figures['tokens_per_s']:.0f} tok/s, "
            f"peak {figures['peak_memory_gb']} GB, MFU {figures['mfu']}"
        )
        del model
        if folder is not None:
            folder.cleanup()
        if cuda:
            torch.cuda.empty_cache()
    return emit(
        {
            "benchmark": "scale",
            "shape": "tiny" if quick else "llama3-8b",
            "pairs": shape.pairs,
            "prompt_tokens": shape.prompt_tokens,
            "completion_tokens": shape.completion_tokens,
            "gradient_checkpointing": checkpointing,
            "peak_bf16_flops": peak,
            "results": results,
            "skipped": skipped,
            "machine": machine(),
        },
        as_json,
    )
