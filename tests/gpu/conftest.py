"""GPU tests: skipped without CUDA. A small random Llama checkpoint on disk stands in for a real model (nothing is
downloaded), and whole runs are started as `python train.py` subprocesses."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import smoke_train_command


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(skip)


@pytest.fixture()
def random_llama(tmp_path: Path) -> Callable[..., Path]:
    """Writes a randomly initialised Llama-architecture checkpoint (with the tiny tokenizer) and returns its folder."""

    def write(hidden_size: int = 256, layers: int = 2, heads: int = 4, dtype: torch.dtype = torch.bfloat16) -> Path:
        from transformers import LlamaConfig, LlamaForCausalLM

        from metareward.model.tiny import build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer()
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads // 2,
            max_position_embeddings=2048,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(0)
        folder = tmp_path / f"llama_{hidden_size}_{layers}"
        LlamaForCausalLM(config).to(dtype).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return folder

    return write


# The evaluation callbacks' packages. A GPU machine set up from the offline wheelhouse lacks them (they are large):
# there the runs leave those callbacks out, since these tests check precision and strategies, not evaluation.
EVALUATION_PACKAGES = ("pandas", "scipy", "sklearn", "alpaca_eval", "matplotlib")
NO_EVALUATION = ("callbacks.win_rate=null", "callbacks.judge_quality=null", "callbacks.dashboard=null")


def evaluation_overrides() -> tuple[str, ...]:
    missing = [name for name in EVALUATION_PACKAGES if importlib.util.find_spec(name) is None]
    return NO_EVALUATION if missing else ()


@pytest.fixture()
def train_run(prompt_file: Path, tmp_path: Path) -> Callable[..., dict]:
    """Runs `python train.py +experiment=smoke <overrides>` to the end and returns its summary.json."""

    def run(*overrides: str) -> dict:
        run_dir = tmp_path / "run"
        env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
        args = smoke_train_command(prompt_file, run_dir, *evaluation_overrides(), *overrides)
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1200, check=False)
        assert done.returncode == 0, done.stderr[-4000:]
        return json.loads((run_dir / "summary.json").read_text())

    return run
