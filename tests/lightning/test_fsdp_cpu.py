"""trainer=fsdp end to end on two CPU processes (gloo): generation under sharded weights, training, adapter and
resume checkpoints. The strategy is Lightning's FSDPStrategy with the CPU allowances of cpu_fsdp.py; on a GPU,
tests/gpu runs the unchanged config."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import FSDP_ON_CPU, fsdp_on_cpu_environment, smoke_train_command
from safetensors.torch import load_file


def run(prompt_file: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = fsdp_on_cpu_environment()
    args = smoke_train_command(prompt_file, run_dir, "callbacks.dashboard=null", *FSDP_ON_CPU, *extra)
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_fsdp_run_on_two_cpu_processes(prompt_file: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run(prompt_file, run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    for it in summary["iterations"]:
        assert it["stats"]["data/world_size"] == 2 and it["train"]["loss"] is not None
        assert it["weights"]["base_unchanged"] and it["weights"]["adapter_norms"]["actor"] > 0
        assert "win_rate" in it["eval"] and "judge_accuracy" in it["eval"]  # evaluation generated under FSDP too
    # adapters gathered from the shards, named as in the PEFT model
    saved = load_file(run_dir / "checkpoints" / "iter_02" / "actor" / "adapter_model.safetensors")
    assert saved and all("lora_" in k and "_fsdp_wrapped_module" not in k and ".actor." not in k for k in saved)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["state_dict"] and all("lora_" in k for k in checkpoint["state_dict"])  # adapters only
    resumed = run(prompt_file, run_dir, "resume=true")  # FSDP loads the adapter-only checkpoint
    assert "Restored all states" in resumed.stdout + resumed.stderr


@pytest.mark.slow
def test_full_fine_tuning_under_fsdp_on_two_cpu_processes(prompt_file: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run(prompt_file, run_dir, "model.finetune=full")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    distances = [it["weights"]["distance_from_seed"] for it in summary["iterations"]]
    assert 0 < distances[0] < distances[1]  # gathered from the shards and compared with M0 on every rank
    assert all("win_rate" in it["eval"] for it in summary["iterations"])  # M0 answered beside the trained model
    saved = load_file(run_dir / "checkpoints" / "iter_02" / "policy" / "model.safetensors")
    assert "model.layers.0.self_attn.q_proj.weight" in saved and not any("_fsdp" in k for k in saved)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert "model.model.layers.0.self_attn.q_proj.weight" in checkpoint["state_dict"]  # every weight, no adapters
    resumed = run(prompt_file, run_dir, "model.finetune=full", "resume=true")
    assert "Restored all states" in resumed.stdout + resumed.stderr
