"""What the adapters compute in during a DPO step (RoleAdapters.compute_context, model.adapters.compute_dtype)."""

from __future__ import annotations

import pytest
import torch
from peft.tuners.lora import LoraLayer

from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.compat import enable_activation_checkpointing
from metareward.model.logprobs import completion_logprobs
from metareward.model.tiny import build_tiny_model, build_tiny_tokenizer


def adapters_over(weights: torch.dtype, compute: str = "weights", checkpointing: bool = False) -> RoleAdapters:
    tokenizer = build_tiny_tokenizer()
    base = build_tiny_model(tokenizer, seed=0, hidden_size=128).to(weights)
    if checkpointing:
        enable_activation_checkpointing(base)
    adapters = RoleAdapters(base, AdapterSpec(r=4, alpha=8, compute_dtype=compute))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # B starts at zero; a trained adapter has both factors
        for parameter in adapters.adapter_parameters():
            parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator))
    return adapters


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids = torch.randint(3, 60, (3, 12), generator=torch.Generator().manual_seed(2))
    attention = torch.ones_like(ids)
    attention[0, :3] = 0  # left padding
    completion = torch.zeros_like(ids)
    completion[:, -5:] = 1
    return ids, attention, completion


def step(adapters: RoleAdapters) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Summed completion log-probs in the adapters' compute context, and the adapters' gradients of their sum."""
    adapters.model.train()
    with adapters.compute_context():
        logps, _ = completion_logprobs(adapters.model, *batch())
    logps.sum().backward()
    grads = [p.grad for p in adapters.adapter_parameters() if p.grad is not None]
    return logps.detach(), grads


def test_bfloat16_weights_compute_the_adapters_in_bfloat16_from_float32_masters():
    adapters = adapters_over(torch.bfloat16)
    lora = next(m for m in adapters.model.modules() if isinstance(m, LoraLayer))
    seen: list[torch.dtype] = []
    lora.lora_A["actor"].register_forward_hook(lambda _, inputs, out: seen.append(inputs[0].dtype))
    with adapters.compute_context():
        assert torch.is_autocast_enabled("cpu") and not lora.cast_input_dtype_enabled
        adapters.model(torch.tensor([[5, 6, 7]]))
    assert seen == [torch.bfloat16]  # PEFT would have cast the input to its float32 weights
    assert lora.cast_input_dtype_enabled and not torch.is_autocast_enabled("cpu")  # both restored
    _, grads = step(adapters)
    assert grads and all(g.dtype == torch.float32 for g in grads)
    assert all(p.dtype == torch.float32 for p in adapters.adapter_parameters())


def test_the_log_probs_stay_within_bfloat16_rounding_of_float32_adapters():
    ours, ours_grads = step(adapters_over(torch.bfloat16, "weights"))
    peft, peft_grads = step(adapters_over(torch.bfloat16, "float32"))
    torch.testing.assert_close(ours, peft, rtol=1e-2, atol=0.1)  # sums of 5 log-probs near -20
    for mine, theirs in zip(ours_grads, peft_grads):
        assert torch.linalg.vector_norm(mine - theirs) <= 0.05 * torch.linalg.vector_norm(theirs)


@pytest.mark.parametrize(("weights", "compute"), [(torch.float32, "weights"), (torch.bfloat16, "float32")])
def test_other_settings_compute_as_peft_does(weights, compute):
    adapters = adapters_over(weights, compute)
    with adapters.compute_context():
        assert not torch.is_autocast_enabled("cpu")


def test_gradient_checkpointing_recomputes_with_the_same_result():
    """The backward pass recomputes each layer outside the context (PEFT's input cast back on, autocast restored
    by the checkpoint): the same log-probs and gradients as without checkpointing."""
    plain, plain_grads = step(adapters_over(torch.bfloat16))
    checkpointed, checkpointed_grads = step(adapters_over(torch.bfloat16, checkpointing=True))
    torch.testing.assert_close(checkpointed, plain)
    assert len(checkpointed_grads) == len(plain_grads)
    for mine, theirs in zip(checkpointed_grads, plain_grads):
        torch.testing.assert_close(mine, theirs)
