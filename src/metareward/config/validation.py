"""Checks of the config against this machine and the file system, run before any model is loaded (the values' own
rules are stated beside their settings' fields)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from metareward.model import loading
from metareward.storage.datafiles import file_problem

PROMPT_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
# What each evaluation file should be, in the words of the loaders' messages (evaluation.data), so both agree.
EVAL_PROMPTS = "a JSON Lines file of evaluation prompts"
LABELLED_PAIRS = "a JSON Lines file of labelled judge pairs"
GPU_EXTRA = "install the gpu extra (pip install 'metareward[gpu]') on a machine with CUDA"
# Strategies that shard the model, by how their class or Lightning name starts (FSDPStrategy, "deepspeed_stage_3").
SHARDED_STRATEGIES = ("fsdp", "deepspeed")


def environment_problems(cfg: DictConfig) -> list[str]:
    """Every problem of paths and hardware, as plain sentences naming the config key and the fix."""
    return _data_problems(cfg) + _output_problems(cfg) + _hardware_problems(cfg)


def _data_problems(cfg: DictConfig) -> list[str]:
    path = Path(str(cfg.data.path)).expanduser()
    if path.suffix == ".jsonl" or path.is_dir():
        problem = file_problem(path, "data.path", "a JSONL file of prompts")
        return [problem] if problem else []
    if path.suffix in PROMPT_FILE_SUFFIXES and not path.is_file():
        return [f"data.path={str(cfg.data.path)!r} does not exist; point it at a prompt file"]
    return []


def _output_problems(cfg: DictConfig) -> list[str]:
    directory = Path(str(cfg.paths.output_dir))
    reason = unwritable_reason(directory)
    if reason:
        return [f"the run directory {directory} cannot be created ({reason}); choose another with hydra.run.dir=..."]
    return []


def unwritable_reason(directory: Path) -> str | None:
    """Why `directory` cannot be created and written, found by creating (and removing) an empty folder in it or in
    its nearest existing parent: permission bits say little for root or on /proc, a read-only or full file system."""
    existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if existing is None:
        return "no parent folder exists"
    if not existing.is_dir():
        return f"{existing} is a file"
    try:
        Path(tempfile.mkdtemp(prefix=".metareward-probe-", dir=existing)).rmdir()
    except OSError as error:
        return error.strerror or type(error).__name__
    return None


def _hardware_problems(cfg: DictConfig) -> list[str]:
    cuda = torch.cuda.is_available()
    sharding = sharded_strategy(cfg.trainer.get("strategy"))
    if sharding and not cuda:  # one sentence: the strategy is the reason; its accelerator and precision follow it
        found = [
            f"trainer={sharding} shards the model over CUDA GPUs and none is visible: {GPU_EXTRA}, or use trainer=cpu"
        ]
    else:
        found = _device_problems(cfg, cuda) + _strategy_problems(cfg, sharding)
    attention = str(cfg.model.get("attn_implementation"))
    if attention == "flash_attention_2" and (not cuda or not loading.is_installed("flash_attn")):
        found.append(f"model.attn_implementation=flash_attention_2 needs flash-attn and CUDA: {GPU_EXTRA}, or use sdpa")
    elif attention.startswith("flash_attention_") and not cuda:  # 3 and 4: their own packages, on recent GPUs
        found.append(f"model.attn_implementation={attention} needs a CUDA GPU; use sdpa here")
    quantization = cfg.model.get("quantization")
    if quantization and (not cuda or not loading.is_installed("bitsandbytes")):
        found.append(f"model.quantization={quantization} needs bitsandbytes and CUDA: {GPU_EXTRA}, or set it to null")
    return found


def _device_problems(cfg: DictConfig, cuda: bool) -> list[str]:
    found = []
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda") and not cuda:
        found.append(f"trainer.accelerator={accelerator} needs a CUDA GPU and none is visible; use trainer=cpu here")
    precision = str(cfg.trainer.get("precision", "32-true"))
    if precision.startswith("16") and not cuda:
        found.append(f"trainer.precision={precision} needs a CUDA GPU; use 32-true or bf16-mixed on a CPU")
    return found


def sharded_strategy(strategy: Any) -> str | None:
    """Which sharding strategy trainer.strategy (a `_target_` node or a Lightning strategy name) is: "fsdp",
    "deepspeed", or None for one that does not shard the model."""
    if strategy is None:
        return None
    name = str(strategy.get("_target_", "")) if isinstance(strategy, DictConfig) else str(strategy)
    name = name.rsplit(".", 1)[-1].lower()
    for kind in SHARDED_STRATEGIES:
        if name.startswith(kind):
            return kind
    return None


def _strategy_problems(cfg: DictConfig, sharding: str | None) -> list[str]:
    if sharding is None:
        return []
    found = []
    if sharding == "deepspeed" and not loading.is_installed("deepspeed"):
        found.append(
            "trainer=deepspeed needs DeepSpeed, which is not installed: pip install deepspeed "
            "(or pip install 'metareward[deepspeed]')"
        )
    if cfg.model.get("quantization"):
        found.append(
            f"model.quantization={cfg.model.quantization} does not combine with trainer={sharding}: "
            "QLoRA runs on one GPU (trainer=gpu) or with trainer=ddp"
        )
    if cfg.model.get("finetune") == "full" and OmegaConf.select(cfg, "generation.backend") == "vllm":
        found.append(
            f"model.finetune=full with generation=vllm saves each process's whole copy of the trained weights for "
            f"the server, which trainer={sharding} splits over the GPUs; use trainer=ddp or generation=hf"
        )
    checkpoint = (cfg.get("callbacks") or {}).get("adapter_checkpoint")
    if checkpoint is not None and checkpoint.get("save_merged"):
        found.append(
            f"callbacks.adapter_checkpoint.save_merged=true is not supported with trainer={sharding}; "
            "merge the saved adapters after the run"
        )
    return found


def evaluation_problems(cfg: DictConfig) -> list[str]:
    """The evaluator settings and the evaluation files, when the evaluation callbacks are switched on."""
    from metareward.evaluation.settings import checked_evaluator

    callbacks = cfg.get("callbacks") or {}
    evaluation = cfg.get("evaluation")
    if evaluation is None:
        return []
    found = []
    if callbacks.get("win_rate") is not None:
        found += checked_evaluator(evaluation.get("evaluator"))[1]
        path = Path(str(evaluation.data_path)).expanduser()
        found += [p for p in [file_problem(path, "evaluation.data_path", EVAL_PROMPTS)] if p]
    found += pass_choice_problems(cfg)
    if callbacks.get("judge_quality") is not None:
        labelled = Path(str(evaluation.judge_quality.data_path)).expanduser()
        found += [p for p in [file_problem(labelled, "evaluation.judge_quality.data_path", LABELLED_PAIRS)] if p]
    return found


def pass_choice_problems(cfg: DictConfig) -> list[str]:
    """dpo.choose_pass_by reads a figure of the win-rate evaluation after every pass, and keeps a copy of the
    trained weights that only a strategy holding them whole on every rank (one device, DDP) can put back."""
    figure = OmegaConf.select(cfg, "dpo.choose_pass_by")
    if figure is None:
        return []
    shown, found = f"dpo.choose_pass_by={figure}", []
    if (cfg.get("callbacks") or {}).get("win_rate") is None:
        found.append(f"{shown} reads the win-rate evaluation, which callbacks.win_rate=null switches off")
    elif figure == "seed_judge_score" and not OmegaConf.select(cfg, "evaluation.seed_judge"):
        found.append(f"{shown} is measured by the seed judge: set evaluation.seed_judge=true or choose another figure")
    sharding = sharded_strategy(OmegaConf.select(cfg, "trainer.strategy"))
    if sharding is not None:
        found.append(
            f"{shown} puts back a copy of the trained weights, written for one device and DDP, not for the "
            f"sharded trainer.strategy ({sharding}); set choose_pass_by null or use trainer=ddp"
        )
    return found
