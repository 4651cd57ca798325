"""completion_logprobs against a naive full-logits computation, on the tiny model with and without LoRA."""

from __future__ import annotations

import pytest
import torch
from helpers import plain_logprob
from peft import LoraConfig, get_peft_model

from metareward.model.logprobs import TokenLogprobs, completion_logprobs, token_logprobs
from metareward.model.tiny import build_tiny

# (prompt length, completion length) per row: different on both sides so padding and the logit window both vary.
ROW_SHAPES = [(5, 3), (2, 7), (9, 1), (4, 4)]


@pytest.fixture(scope="module")
def tiny():
    return build_tiny(seed=0)


def _left_padded_batch(vocab_size: int, pad_id: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    rows = [(torch.randint(3, vocab_size, (p + c,), generator=generator), c) for p, c in ROW_SHAPES]
    length = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), length), pad_id)
    attention_mask = torch.zeros_like(input_ids)
    completion_mask = torch.zeros_like(input_ids)
    for i, (ids, completion) in enumerate(rows):
        input_ids[i, length - len(ids) :] = ids
        attention_mask[i, length - len(ids) :] = 1
        completion_mask[i, length - completion :] = 1
    return rows, input_ids, attention_mask, completion_mask


def _naive(model, rows) -> torch.Tensor:
    """Each row alone, unpadded, with every logit and a plain log_softmax (`helpers.plain_logprob`)."""
    return torch.tensor(
        [plain_logprob(model, ids[:-completion].tolist(), ids[-completion:].tolist()) for ids, completion in rows],
        dtype=torch.float64,
    )


def _lora(model):
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # LoRA starts as a no-op (B = 0); make it change the outputs
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(1))
    return peft_model


def test_matches_naive_full_logits(tiny):
    model, tokenizer = tiny
    rows, input_ids, attention_mask, completion_mask = _left_padded_batch(len(tokenizer), tokenizer.pad_token_id)
    with torch.no_grad():
        logps, counts = completion_logprobs(model, input_ids, attention_mask, completion_mask)
        expected = _naive(model, rows)
    assert counts.tolist() == [c for _, c in ROW_SHAPES]
    torch.testing.assert_close(logps.double(), expected, atol=1e-5, rtol=0)


def test_matches_naive_full_logits_with_lora_and_is_differentiable():
    model, tokenizer = build_tiny(seed=1)
    peft_model = _lora(model)
    rows, input_ids, attention_mask, completion_mask = _left_padded_batch(len(tokenizer), tokenizer.pad_token_id, 2)
    logps, _ = completion_logprobs(peft_model, input_ids, attention_mask, completion_mask)
    with torch.no_grad():
        expected = _naive(peft_model, rows)
        with peft_model.disable_adapter():
            base = _naive(peft_model, rows)
    torch.testing.assert_close(logps.detach().double(), expected, atol=1e-5, rtol=0)
    assert not torch.allclose(expected, base)  # the adapter really took part
    logps.sum().backward()
    lora_grads = [p.grad for n, p in peft_model.named_parameters() if "lora_" in n]
    assert lora_grads and all(g is not None and torch.isfinite(g).all() for g in lora_grads)
    assert any(g.abs().sum() > 0 for g in lora_grads)


@pytest.mark.parametrize("wrap", [False, True], ids=["plain", "lora"])
def test_projects_only_the_completion_window(wrap):
    """logits_to_keep reaches the LM head through the PEFT wrapper: max completion length + 1 positions only."""
    model, tokenizer = build_tiny(seed=0)
    wrapped = _lora(model) if wrap else model
    _, input_ids, attention_mask, completion_mask = _left_padded_batch(len(tokenizer), tokenizer.pad_token_id)
    seen = []
    handle = model.lm_head.register_forward_hook(lambda module, args, output: seen.append(output.shape))
    with torch.no_grad():
        completion_logprobs(wrapped, input_ids, attention_mask, completion_mask)
    handle.remove()
    assert seen == [torch.Size([len(ROW_SHAPES), max(c for _, c in ROW_SHAPES) + 1, len(tokenizer)])]


def test_no_grad_under_inference_mode(tiny):
    model, tokenizer = tiny
    _, input_ids, attention_mask, completion_mask = _left_padded_batch(len(tokenizer), tokenizer.pad_token_id)
    with torch.inference_mode():
        logps, _ = completion_logprobs(model, input_ids, attention_mask, completion_mask)
    assert not logps.requires_grad


def test_rejects_right_padded_completions(tiny):
    model, tokenizer = tiny
    _, input_ids, attention_mask, completion_mask = _left_padded_batch(len(tokenizer), tokenizer.pad_token_id)
    shifted = torch.roll(completion_mask, shifts=-1, dims=1)  # last position of each row no longer completion
    shifted[:, -1] = 0
    shifted[:, 0] = 1
    with pytest.raises(ValueError, match="left-pad"):
        completion_logprobs(model, input_ids, attention_mask, shifted)


def test_token_logprobs_half_precision_matches_float32():
    logits = torch.randn(3, 4, 11, generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 11, (3, 4), generator=torch.Generator().manual_seed(1))
    expected = torch.log_softmax(logits.bfloat16().float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)
    result = token_logprobs(logits.bfloat16(), targets)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, expected)


def _reference_token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """What `token_logprobs` replaces: autograd through a float32 log-softmax of every position."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)


def test_token_logprobs_gradient_is_exact_in_float64():
    logits = torch.randn(5, 3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    targets = torch.randint(0, 7, (5, 3), generator=torch.Generator().manual_seed(3))
    assert torch.autograd.gradcheck(lambda x: token_logprobs(x, targets), (logits,))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_token_logprobs_matches_autograd_across_chunks(dtype):
    """More positions than one float32 block holds: values and gradients as autograd through log_softmax gives."""
    generator = torch.Generator().manual_seed(4)
    rows = 2 * TokenLogprobs.CHUNK + 5
    logits = (3 * torch.randn(rows, 50, generator=generator)).to(dtype)
    targets = torch.randint(0, 50, (rows,), generator=generator)
    weights = torch.randn(rows, generator=generator)
    ours = logits.clone().requires_grad_()
    reference = logits.clone().requires_grad_()
    got = token_logprobs(ours, targets)
    expected = _reference_token_logprobs(reference, targets)
    (got * weights).sum().backward()
    (expected * weights).sum().backward()
    assert got.dtype == expected.dtype == torch.float32
    torch.testing.assert_close(got, expected)
    assert ours.grad.dtype == dtype
    torch.testing.assert_close(ours.grad, reference.grad)
