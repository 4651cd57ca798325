"""Whole smoke runs on a GPU: bf16 mixed precision, FSDP, DeepSpeed ZeRO. Not yet run on a GPU in this project."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

pytestmark = pytest.mark.gpu


def assert_trained(summary: dict, world_size: int = 1) -> None:
    assert summary["status"] == "finished"
    for it in summary["iterations"]:
        loss = it["train"]["loss"]
        assert loss is not None and math.isfinite(loss)
        assert it["stats"]["data/world_size"] == world_size
        assert it["weights"]["base_unchanged"] and it["weights"]["adapter_norms"]["actor"] > 0


def test_bf16_mixed_on_one_gpu(train_run) -> None:
    assert_trained(train_run("trainer=gpu"))


def test_fsdp_on_one_gpu(train_run) -> None:
    assert_trained(train_run("trainer=fsdp", "trainer.devices=1"))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_fsdp_on_two_gpus(train_run) -> None:
    assert_trained(train_run("trainer=fsdp", "trainer.devices=2"), world_size=2)


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs deepspeed (pip install deepspeed)")
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_on_the_visible_gpus(train_run, stage: int) -> None:
    devices = min(torch.cuda.device_count(), 2)
    summary = train_run("trainer=deepspeed", f"trainer.strategy.stage={stage}", f"trainer.devices={devices}")
    assert_trained(summary, world_size=devices)
