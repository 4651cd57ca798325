"""The measuring parts of the GPU check, each run by `metareward.bench.gpu_check` as its own process.

`python -m metareward.bench.gpu_parts {environment,scale,loop} --result FILE [--variant lora|qlora] [--quick]`
writes one JSON object to FILE: {"status": "passed" | "skipped", "reason": ..., "figures": {...}}. A part that
breaks exits non-zero and writes nothing; its process, not this module, is what the check times out and kills, so a
hang or a crash in one part never costs the figures of another. Nothing here downloads: the models are random
weights in a real architecture's shape, written to a temporary folder with the tiny in-process tokenizer.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
# Llama-3.2-1B: the loop's model, a real architecture small enough to make data and train in about a minute.
LLAMA32_1B = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
}
# The same architecture at the dry run's size; vocab_size 0 means the tokenizer's own.
LOOP_TINY = {
    **LLAMA32_1B,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 0,
}
# The loop at short lengths on the 1B model: 8 prompts, 4 answers each, 3 judgments each, one iteration.
LOOP_SIZES = (
    "data.prompts_per_iteration=8",
    "actor.num_responses=4",
    "actor.max_new_tokens=64",
    "judge.max_new_tokens=64",
    "meta_judge.max_new_tokens=32",
    "model.adapters.r=16",
    "model.adapters.alpha=32",
)
# The evaluation callbacks need pandas, scipy, alpaca_eval and matplotlib, which the wheelhouse leaves out for size.
NO_EVALUATION = ("callbacks.win_rate=null", "callbacks.judge_quality=null", "callbacks.dashboard=null")


def skipped(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason, "figures": {}}


def passed(figures: dict[str, Any]) -> dict[str, Any]:
    return {"status": "passed", "reason": None, "figures": figures}


def versions(names: Sequence[str]) -> dict[str, str | None]:
    """Installed distribution versions, read from their metadata (nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def out_of_range(installed: dict[str, str | None]) -> list[str]:
    """Installed packages outside the ranges pyproject.toml declares (dependencies and the gpu extra)."""
    try:
        import tomllib
        from packaging.requirements import Requirement
    except ImportError:  # Python 3.10, or no packaging: the ranges are not checked
        return []
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    problems = []
    for line in [*project["dependencies"], *project["optional-dependencies"]["gpu"]]:
        requirement = Requirement(line)
        found = installed.get(requirement.name)
        if found and requirement.specifier and not requirement.specifier.contains(found, prereleases=True):
            problems.append(f"{requirement.name} {found} is outside {requirement.specifier}")
    return problems


def environment() -> dict[str, Any]:
    """What the figures were measured on: GPU, CUDA, the versions that matter, and whether the project imports."""
    import torch

    names = ("torch", "transformers", "peft", "lightning", "hydra-core", "omegaconf", "bitsandbytes", "flash-attn")
    installed = versions((*names, "deepspeed", "datasets", "wandb", "pytest", "numpy", "accelerate"))
    figures: dict[str, Any] = {
        "python": sys.version.split()[0],
        "versions": installed,
        "out_of_range": out_of_range(installed),
        "cuda_available": torch.cuda.is_available(),
        "torch_cuda": torch.version.cuda,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        figures.update(
            gpu=props.name,
            gpu_count=torch.cuda.device_count(),
            gpu_memory_gb=round(props.total_memory / 1e9, 1),
            compute_capability=f"{props.major}.{props.minor}",
            bf16=torch.cuda.is_bf16_supported(),
        )
    try:
        import metareward.run.training  # noqa: F401  (the whole loop's imports: hydra, omegaconf, lightning, peft)
    except ImportError as error:  # the figures above still go into the record
        return {"status": "failed", "reason": f"the project does not import: {error}", "figures": figures}
    return passed(figures)


def scale(variant: str, quick: bool) -> dict[str, Any]:
    """One variant of `bench scale` (Llama-3-8B shape, random weights): its step time, tokens/s, MFU, peak memory."""
    import importlib.util

    import torch

    from metareward.bench import scale as bench

    cuda = torch.cuda.is_available()
    if not cuda and not quick:
        return skipped("needs a CUDA GPU (an 8B model in bf16 takes 16 GB)")
    if variant == "qlora" and not cuda:
        return skipped("4-bit QLoRA needs CUDA: bitsandbytes' 4-bit kernels run on the GPU")
    if variant == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
        return skipped("bitsandbytes is not installed (not in the wheelhouse; see docs/benchmarks.md to add it)")
    device = torch.device("cuda" if cuda else "cpu")
    dims, dtype = (bench.TINY, torch.float32) if quick else (bench.LLAMA3_8B, torch.bfloat16)
    shape = bench.StepShape(2, 8, 4) if quick else bench.StepShape(4, 512, 512)
    start = time.perf_counter()
    model, folder = bench.build_model(dims, dtype, device, variant == "qlora", True)
    built = time.perf_counter() - start
    figures = bench.time_steps(model, shape, 1 if quick else 3)
    flops = bench.model_flops_per_token(model) * shape.tokens
    peak = bench.peak_flops(device)
    figures.update(
        shape="tiny" if quick else "llama3-8b",
        pairs=shape.pairs,
        prompt_tokens=shape.prompt_tokens,
        completion_tokens=shape.completion_tokens,
        gradient_checkpointing=True,
        build_seconds=built,
        model_tflops_per_step=flops / 1e12,
        peak_bf16_tflops=peak / 1e12 if peak else None,
        mfu=flops / figures["step_seconds"] / peak if peak else None,
    )
    if folder is not None:
        folder.cleanup()
    return passed(figures)


def write_model(folder: Path, dims: dict[str, Any], dtype: str, device: str) -> int:
    """A random model of `dims` saved with the tiny tokenizer, grown with placeholder tokens to the model's
    vocabulary so that every sampled id decodes (a real tokenizer cannot be downloaded here). Returns parameters."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from metareward.model.tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    vocab = dims["vocab_size"] or len(tokenizer)
    tokenizer.add_tokens([f"<t{i}>" for i in range(vocab - len(tokenizer))])
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = LlamaConfig(**{**dims, "vocab_size": vocab}, **ids, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(getattr(torch, dtype))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def loop(quick: bool, work: Path) -> dict[str, Any]:
    """One iteration of the whole loop, as `python train.py` runs it (HF generation backend), on a random model:
    seconds per phase and the peak GPU memory of the run."""
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not quick:
        return skipped("needs a CUDA GPU (trainer=gpu, bf16)")
    dims, dtype = (LOOP_TINY, "float32") if quick else (LLAMA32_1B, "bfloat16")
    parameters = write_model(work / "model", dims, dtype, "cuda" if cuda else "cpu")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    run_dir = work / "run"
    overrides = [
        "+experiment=smoke",
        f"model.path={work / 'model'}",
        f"model.dtype={dtype}",
        f"trainer={'gpu' if cuda else 'cpu'}",
        "generation=hf",
        "num_iterations=1",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        *NO_EVALUATION,
        *(() if quick else LOOP_SIZES),
    ]
    start = time.perf_counter()
    run_train_script(overrides)
    seconds = time.perf_counter() - start
    summary = json.loads((run_dir / "summary.json").read_text())
    iteration = summary["iterations"][0]
    return passed(
        {
            "model": "tiny" if quick else "llama3.2-1b",
            "parameters": parameters,
            "overrides": overrides,
            "wall_seconds": seconds,
            "iteration_seconds": iteration.get("seconds"),
            "phase_seconds": iteration.get("phases", {}),
            "actor_pairs": iteration.get("actor_pairs"),
            "judge_pairs": iteration.get("judge_pairs"),
            "train_loss": (iteration.get("train") or {}).get("loss"),
            "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if cuda else None,
            "peak_gpu_reserved_gb": torch.cuda.max_memory_reserved() / 1e9 if cuda else None,
            "peak_rss_mb": summary.get("peak_rss_mb"),
        }
    )


def run_train_script(overrides: Sequence[str]) -> None:
    """train.py itself, run as the main module of this process (so this process can read the GPU's peak memory);
    Hydra reads the overrides from sys.argv as on the command line."""
    script = str(REPO_ROOT / "train.py")
    saved = sys.argv
    sys.argv = [script, *overrides]
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        sys.argv = saved


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m metareward.bench.gpu_parts", description=__doc__)
    p.add_argument("part", choices=("environment", "scale", "loop"))
    p.add_argument("--result", type=Path, required=True, help="where to write the part's JSON result")
    p.add_argument("--variant", choices=("lora", "qlora"), default="lora", help="scale: LoRA bf16 or 4-bit QLoRA")
    p.add_argument("--quick", action="store_true", help="tiny shapes on CPU: checks the code path, not the GPU")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.part == "environment":
        result = environment()
    elif args.part == "scale":
        result = scale(args.variant, args.quick)
    else:
        with tempfile.TemporaryDirectory(prefix="gpu-check-loop-") as work:
            result = loop(args.quick, Path(work))
    args.result.write_text(json.dumps(result, indent=1, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
