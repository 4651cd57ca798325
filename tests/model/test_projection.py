"""The vocabulary projection receives contiguous hidden states, and the logits and gradients stay the same."""

from __future__ import annotations

import torch

from metareward.model.loading import ModelSpec, load_model_and_tokenizer
from metareward.model.projection import contiguous_projection_input
from metareward.model.tiny import build_tiny


def _projection_inputs(model) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    model.get_output_embeddings().register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    return seen


def _logits_and_gradient(model, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=input_ids, logits_to_keep=3).logits
    logits.float().logsumexp(-1).sum().backward()
    return logits.detach(), model.get_input_embeddings().weight.grad.clone()


def test_loaded_models_hand_the_projection_a_contiguous_block_of_the_positions_they_keep():
    model, _ = load_model_and_tokenizer(ModelSpec("builtin:tiny"))
    seen = _projection_inputs(model)
    model(input_ids=torch.randint(3, 100, (4, 9)), logits_to_keep=1)
    assert seen and seen[-1].shape[:2] == (4, 1) and seen[-1].is_contiguous()


def test_without_the_hook_transformers_hands_it_a_strided_slice():
    model, _ = build_tiny(seed=0)
    seen = _projection_inputs(model)
    model(input_ids=torch.randint(3, 100, (4, 9)), logits_to_keep=1)
    assert not seen[-1].is_contiguous()  # what the hook is for: if this fails, transformers changed and it can go


def test_the_hook_changes_neither_logits_nor_gradients():
    (plain, _), (hooked, _) = build_tiny(seed=0), build_tiny(seed=0)
    hooked.get_output_embeddings().register_forward_pre_hook(contiguous_projection_input)
    input_ids = torch.randint(3, 100, (4, 9), generator=torch.Generator().manual_seed(0))
    plain_logits, plain_grad = _logits_and_gradient(plain, input_ids)
    hooked_logits, hooked_grad = _logits_and_gradient(hooked, input_ids)
    torch.testing.assert_close(hooked_logits, plain_logits)
    torch.testing.assert_close(hooked_grad, plain_grad)
