"""The machine's limit and the model FLOPs the benchmarks divide by it."""

from __future__ import annotations

import pytest
import torch

from metareward.bench.peak import (
    forward_flops_per_token,
    matmul_peak_gflops,
    matrix_weights,
    share_of_peak,
    training_flops_per_token,
)
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.tiny import build_tiny


def test_model_flops_count_every_matrix_once_and_the_trained_ones_twice_more() -> None:
    model, _ = build_tiny()
    config = model.config
    h, i, layers, vocab = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i  # q, o; k, v; gate, up, down
    assert matrix_weights(model) == (layers * per_layer + vocab * h, layers * per_layer + vocab * h)
    adapters = RoleAdapters(model, AdapterSpec(mode="shared", r=4, alpha=8, target_modules=("q_proj",)))
    lora = layers * (4 * h + h * 4)  # A: r x in, B: out x r, on q_proj
    total, trained = matrix_weights(adapters.model)
    assert (total, trained) == (layers * per_layer + vocab * h + lora, lora)
    assert forward_flops_per_token(adapters.model) == 2 * total
    assert training_flops_per_token(adapters.model) == 4 * total + 2 * lora


def test_the_peak_is_measured_per_dtype_and_the_share_is_flops_per_second_over_it() -> None:
    assert matmul_peak_gflops(torch.float32, size=256, repeats=2) > 0
    assert matmul_peak_gflops(torch.bfloat16, size=256, repeats=2) > 0
    assert share_of_peak(flops=2e9, seconds=2.0, peak_gflops=4.0) == pytest.approx(0.25)
