"""Scaling out, at the config level: every experiment with every trainer, the GPU-only options refused in one
sentence on a machine without CUDA, and the model configs for the papers' seed models and common open models."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from helpers import REPO_ROOT, compose
from helpers import config_problems as problems

from metareward.config import build, validation
from metareward.config.build import build_settings
from metareward.model import loading
from metareward.model.loading import ModelSpec
from metareward.schema.rules import read

MODELS = {
    "llama3_8b_instruct": "meta-llama/Meta-Llama-3-8B-Instruct",
    "llama3_1_8b_instruct": "meta-llama/Llama-3.1-8B-Instruct",
    "llama2_70b": "meta-llama/Llama-2-70b-hf",
    "qwen2_5_7b_instruct": "Qwen/Qwen2.5-7B-Instruct",
    "mistral_7b_instruct_v0_3": "mistralai/Mistral-7B-Instruct-v0.3",
}


@pytest.fixture()
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture()
def cuda(monkeypatch):
    """A machine with CUDA and the gpu extra, but without DeepSpeed."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(loading, "is_installed", lambda package: package != "deepspeed")
    # Lightning checks the real machine when the preflight builds a Trainer (tests/reliability/test_library_settings.py)
    monkeypatch.setattr(build, "lightning_refusals", lambda trainer: [])


# Every experiment with every trainer: tests/test_experiments.py.


def test_fsdp_config_builds_the_strategy() -> None:
    from hydra.utils import instantiate
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp.wrap import CustomPolicy

    cfg = compose("+experiment=meta_reward_paper", "trainer=fsdp")
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == ("gpu", "bf16-mixed")
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy) and isinstance(strategy.kwargs["auto_wrap_policy"], CustomPolicy)
    assert strategy.kwargs["use_orig_params"] is True and strategy._state_dict_type == "full"


def test_deepspeed_is_zero_2_unless_stage_3_is_asked_for() -> None:
    target = "lightning.pytorch.strategies.DeepSpeedStrategy"
    default = compose("trainer=deepspeed").trainer.strategy
    stage3 = compose("trainer=deepspeed", "trainer.strategy.stage=3").trainer.strategy
    assert (default._target_, default.stage, stage3.stage) == (target, 2, 3)
    assert default.exclude_frozen_parameters is True


@pytest.mark.parametrize(
    ("strategy", "kind"),
    [("fsdp", "fsdp"), ("fsdp_cpu_offload", "fsdp"), ("deepspeed_stage_3", "deepspeed"), ("ddp", None), (None, None)],
)
def test_sharded_strategies_are_recognised_by_name(strategy: str | None, kind: str | None) -> None:
    assert validation.sharded_strategy(strategy) == kind


def test_without_cuda_a_sharded_trainer_is_one_sentence_naming_the_gpu_extra(no_cuda) -> None:
    for trainer in ("fsdp", "deepspeed"):
        found = problems("+experiment=smoke", f"trainer={trainer}")
        assert len(found) == 1 and f"trainer={trainer}" in found[0] and "metareward[gpu]" in found[0]


def test_missing_deepspeed_is_one_sentence_naming_pip_install(cuda) -> None:
    expected = (
        "trainer=deepspeed needs DeepSpeed, which is not installed: pip install deepspeed "
        "(or pip install 'metareward[deepspeed]')"
    )
    assert problems("+experiment=smoke", "trainer=deepspeed") == [expected]


def test_quantization_does_not_combine_with_sharding(cuda) -> None:
    expected = (
        "model.quantization=4bit does not combine with trainer=fsdp: QLoRA runs on one GPU (trainer=gpu) or with "
        "trainer=ddp"
    )
    assert problems("+experiment=smoke", "trainer=fsdp", "model.quantization=4bit") == [expected]
    assert problems("+experiment=smoke", "trainer=ddp", "model.quantization=4bit") == []


def test_full_fine_tuning_on_vllm_needs_whole_weights_in_every_process(cuda, tmp_path) -> None:
    python = tmp_path / "python"
    python.write_text("")
    run = ("+experiment=meta_reward", "model.finetune=full", "generation=vllm", f"generation.python={python}")
    expected = (
        "model.finetune=full with generation=vllm saves each process's whole copy of the trained weights for the "
        "server, which trainer=fsdp splits over the GPUs; use trainer=ddp or generation=hf"
    )
    assert problems(*run, "trainer=fsdp") == [expected]
    assert problems(*run, "trainer=ddp", "trainer.devices=2") == []


def test_merged_saving_is_refused_under_sharding(cuda) -> None:
    found = problems("+experiment=smoke", "trainer=fsdp", "callbacks.adapter_checkpoint.save_merged=true")
    assert len(found) == 1 and "save_merged" in found[0]


@pytest.mark.parametrize(
    "override",
    ["trainer=fsdp", "trainer=deepspeed", "model.quantization=4bit", "model.attn_implementation=flash_attention_2"],
)
def test_gpu_only_options_end_the_run_with_one_line(override: str, no_cuda, tmp_path, capsys) -> None:
    from metareward.run.training import main

    with pytest.raises(SystemExit) as exit_status:
        main(compose("+experiment=smoke", override, output_dir=tmp_path))
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_status.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: invalid config: ")
    assert "metareward[gpu]" in lines[0] and not (tmp_path / "summary.json").exists()  # before any model loaded


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal of a machine without CUDA")
def test_the_cli_refuses_trainer_fsdp_here_in_one_line(tmp_path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "train.py"), "+experiment=smoke", "trainer=fsdp", f"hydra.run.dir={tmp_path}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert lines[0].startswith("error: ") and "trainer=fsdp " in lines[0] and "metareward[gpu]" in lines[0]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_configs_compose_without_problems(name: str, cuda) -> None:
    settings = build_settings(compose(f"model={name}"))  # raises on any problem of the model or its adapters
    spec = settings.model
    assert spec.path == MODELS[name] and spec.dtype == "bfloat16" and spec.attn_implementation == "auto"
    assert spec.gradient_checkpointing and spec.quantization == ("4bit" if name == "llama2_70b" else None)
    assert set(settings.adapters.target_modules) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert read(ModelSpec, compose(f"model={name}").model, "model") == (spec, [])


def test_auto_attention_is_flash_only_with_flash_attn_cuda_and_16_bits(monkeypatch) -> None:
    spec = loading.ModelSpec("some/model", dtype="bfloat16", attn_implementation="auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert spec.attention() == "sdpa_packed"  # on CPU (model/attention.py)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(loading, "is_installed", lambda package: package == "flash_attn")
    assert spec.attention() == "flash_attention_2"
    assert loading.ModelSpec("some/model", dtype="float32", attn_implementation="auto").attention() == "sdpa"
    assert loading.ModelSpec("some/model", attn_implementation=None).attention() is None  # transformers' default
    assert loading.ModelSpec("some/model", attn_implementation="eager").attention() == "eager"


@pytest.mark.parametrize(
    ("variables", "worker"),
    [
        ({}, False),
        ({"LOCAL_RANK": "1"}, True),  # a process a strategy started on this machine
        ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, True),  # the first process of another node
        ({"RANK": "3", "LOCAL_RANK": "0"}, True),  # torchrun's global rank on another node
        ({"SLURM_PROCID": "0"}, False),  # one task of srun (or a submitit job)
        ({"SLURM_PROCID": "9"}, True),
        ({"RANK": ""}, False),
    ],
)
def test_only_the_first_process_of_a_run_prepares_its_directory(variables, worker, monkeypatch) -> None:
    from metareward.run.resume import RANK_VARIABLES, is_launched_worker

    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert is_launched_worker() is worker
