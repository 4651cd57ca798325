"""Model loading: built-in models, clear errors, gradient checkpointing with LoRA, the role adapters."""

from __future__ import annotations

import re

import pytest
import torch

from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.loading import ModelLoadError, ModelSpec, load_model_and_tokenizer
from metareward.model.logprobs import completion_logprobs
from metareward.schema.rules import field_problems


def test_a_directory_without_a_model_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match=r"could not load model.path="):
        load_model_and_tokenizer(ModelSpec(str(tmp_path)))


def test_spec_problems_name_the_key() -> None:
    assert field_problems(ModelSpec("builtin:tiny", dtype="float8"), "model") == [
        "model.dtype='float8' is not one of ['auto', 'bfloat16', 'float16', 'float32']"
    ]
    assert "model.quantization='2bit'" in field_problems(ModelSpec("builtin:tiny", quantization="2bit"), "model")[0]
    assert ModelSpec("builtin:none").problems()[0].startswith("model.path='builtin:none' is not a built-in model")


def test_gradient_checkpointing_still_trains_the_adapters() -> None:
    model, _ = load_model_and_tokenizer(ModelSpec("builtin:tiny", gradient_checkpointing=True))
    adapters = RoleAdapters(model, AdapterSpec(r=4, alpha=8))
    adapters.model.train()
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    logps, _ = completion_logprobs(adapters.model, ids, torch.ones_like(ids), torch.tensor([[0, 0, 0, 1, 1, 1]]))
    logps.sum().backward()
    grads = [
        p.grad for n, p in adapters.model.named_parameters() if "lora_B.actor" in n
    ]  # B starts at 0, A does not: B gets the first gradient
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for n, p in adapters.model.named_parameters() if "lora_" not in n)


def test_role_adapters_switch_and_keep_every_adapter_trainable() -> None:
    model, _ = load_model_and_tokenizer(ModelSpec("builtin:tiny"))
    adapters = RoleAdapters(model, AdapterSpec(r=4, alpha=8))
    assert adapters.adapter_names == ("actor", "judge")
    with adapters.role("meta_judge"):
        assert adapters.model.active_adapter == "judge"
    assert adapters.model.active_adapter == "actor"
    assert all(p.requires_grad for p in adapters.adapter_parameters())
    assert not any(p.requires_grad for _, p in adapters.base_parameters())
    shared = RoleAdapters(load_model_and_tokenizer(ModelSpec("builtin:tiny"))[0], AdapterSpec(mode="shared", r=4))
    assert shared.adapter_names == ("policy",) and shared.activate("judge") == "policy"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.adapters.target_modules=[q_proj,qkv_proj]", "model.adapters.target_modules names ['qkv_proj'], which"),
        ("model.adapters.r=64", "model.adapters.r=64 exceeds 32, the smallest dimension of a targeted layer"),
    ],
)
def test_adapter_settings_the_model_does_not_fit_end_in_one_line(prompt_file, tmp_path, override, expected) -> None:
    from helpers import compose

    from metareward.config.build import ConfigError
    from metareward.run.training import train

    cfg = compose("+experiment=smoke", f"data.path={prompt_file}", override, output_dir=tmp_path)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()  # refused before anything trained
