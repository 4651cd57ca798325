"""The HF backend's completion log-likelihoods against a plain forward pass per row: the summed log-softmax of each
completion token given the tokens before it, with the role's adapter on, in the order the rows were given."""

from __future__ import annotations

import pytest
import torch
from helpers import plain_logprob

from metareward.generation.policy import Policy
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.tiny import build_tiny


def test_each_rows_sum_equals_a_plain_forward_with_the_roles_adapter() -> None:
    model, tokenizer = build_tiny()
    adapters = RoleAdapters(model, AdapterSpec(r=4, alpha=8))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    policy = Policy(adapters, tokenizer, 256, progress=False)
    model.train()
    rows = [([5, 6, 7], [8, 9]), ([5], [10, 11, 12, 13]), ([20, 21, 22, 23, 24], [25])]  # lengths differ: padded
    found = {role: policy.completion_logprobs(role, rows, 2, "test") for role in ("actor", "judge")}
    for role, values in found.items():
        with adapters.role(role) as active:
            expected = [plain_logprob(active, list(p), list(c)) for p, c in rows]
        assert values == [pytest.approx(v, abs=1e-4) for v in expected]
    assert found["actor"] != found["judge"]  # the two adapters differ, and each was used for its own role
    assert model.training  # scored in eval mode (no dropout), then put back as it was
