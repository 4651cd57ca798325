"""Checks of the config against this machine and the file system, run before any model is loaded."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from omegaconf import DictConfig

PROMPT_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
GPU_EXTRA = "install the gpu extra (pip install 'metareward[gpu]') on a machine with CUDA"


def environment_problems(cfg: DictConfig) -> list[str]:
    """Every problem of paths and hardware, as plain sentences naming the config key and the fix."""
    return _data_problems(cfg) + _output_problems(cfg) + _hardware_problems(cfg)


def _data_problems(cfg: DictConfig) -> list[str]:
    path = Path(str(cfg.data.path)).expanduser()
    if path.suffix in PROMPT_FILE_SUFFIXES and not path.is_file():
        return [f"data.path={str(cfg.data.path)!r} does not exist; point it at a prompt file"]
    return []


def _output_problems(cfg: DictConfig) -> list[str]:
    directory = Path(str(cfg.paths.output_dir))
    existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK):
        return [f"the run directory {directory} cannot be written; choose another with hydra.run.dir=..."]
    return []


def _hardware_problems(cfg: DictConfig) -> list[str]:
    found = []
    cuda = torch.cuda.is_available()
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda") and not cuda:
        found.append(f"trainer.accelerator={accelerator} needs a CUDA GPU and none is visible; use trainer=cpu here")
    precision = str(cfg.trainer.get("precision", "32-true"))
    if precision.startswith("16") and not cuda:
        found.append(f"trainer.precision={precision} needs a CUDA GPU; use 32-true or bf16-mixed on a CPU")
    attention = cfg.model.get("attn_implementation")
    if attention == "flash_attention_2" and (not cuda or importlib.util.find_spec("flash_attn") is None):
        found.append(f"model.attn_implementation=flash_attention_2 needs flash-attn and CUDA: {GPU_EXTRA}, or use sdpa")
    quantization = cfg.model.get("quantization")
    if quantization and (not cuda or importlib.util.find_spec("bitsandbytes") is None):
        found.append(f"model.quantization={quantization} needs bitsandbytes and CUDA: {GPU_EXTRA}, or set it to null")
    return found


def evaluation_problems(cfg: DictConfig) -> list[str]:
    """The evaluator settings and the evaluation files, when the evaluation callbacks are switched on."""
    from omegaconf import OmegaConf

    from metareward.evaluation.settings import EvaluatorSpec

    callbacks = cfg.get("callbacks") or {}
    evaluation = cfg.get("evaluation")
    if evaluation is None:
        return []
    found = []
    if callbacks.get("win_rate") is not None:
        spec = EvaluatorSpec(**OmegaConf.to_container(evaluation.evaluator, resolve=True))  # type: ignore[arg-type]
        found += spec.problems()
        if not Path(str(evaluation.data_path)).expanduser().is_file():
            found.append(f"evaluation.data_path={str(evaluation.data_path)!r} does not exist")
    if callbacks.get("judge_quality") is not None:
        labelled = Path(str(evaluation.judge_quality.data_path)).expanduser()
        if not labelled.is_file():
            found.append(f"evaluation.judge_quality.data_path={str(labelled)!r} does not exist")
    return found
