"""model.dtype=auto: bfloat16 where the hardware multiplies it natively and the weights do not train, else float32;
the choice is made once, from one place, for the policy, the vLLM server and the benchmarks."""

from __future__ import annotations

import pytest
import torch
from helpers import compose

from metareward.config.build import build_settings
from metareward.model import precision
from metareward.model.loading import ModelSpec, load_model_and_tokenizer
from metareward.model.precision import resolve_dtype


@pytest.fixture
def native(monkeypatch):
    """Pretend the machine does (or does not) compute bfloat16 natively."""

    def pretend(where: str | None) -> None:
        monkeypatch.setattr(precision, "native_bf16", lambda: where)

    return pretend


def test_auto_is_bfloat16_only_where_the_hardware_computes_it(native) -> None:
    native("this CPU (test, avx512_bf16)")
    chosen = resolve_dtype("auto")
    assert chosen.name == "bfloat16" and chosen.torch is torch.bfloat16 and "avx512_bf16" in chosen.reason
    native(None)
    assert resolve_dtype("auto").name == "float32"


def test_weights_that_train_stay_float32_and_a_set_dtype_is_kept(native) -> None:
    native("this CPU (test, amx_bf16)")
    assert resolve_dtype("auto", finetune="full").name == "float32"
    assert resolve_dtype("bfloat16", finetune="full").name == "bfloat16"  # asked for: kept
    assert resolve_dtype("float32").reason == "set in model.dtype"


def test_the_loaded_weights_and_the_server_follow_the_choice(native, tmp_path) -> None:
    native("this CPU (test, avx512_bf16)")
    model, _ = load_model_and_tokenizer(ModelSpec("builtin:tiny"))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    python = tmp_path / "python"  # the config check wants vLLM's Python to exist; nothing runs it here
    python.write_text("")
    vllm = ("generation=vllm", f"generation.python={python}")
    settings = build_settings(compose(*vllm))
    assert settings.model.dtype == "auto" and settings.generation.server.dtype == "bfloat16"
    settings = build_settings(compose(*vllm, "model.finetune=full"))
    assert settings.generation.server.dtype == "float32"
    native(None)
    assert build_settings(compose(*vllm)).generation.server.dtype == "float32"


def test_the_cpu_features_are_read(monkeypatch) -> None:
    features = precision.cpu_features()
    assert "sse2" in features or not features  # x86: torch lists it; elsewhere the set may be empty
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    assert isinstance(precision.cpu_features(), set)  # /proc/cpuinfo instead
