"""The shared-prompt path of completion_logprobs (DPO batches) against each row scored alone."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model

from metareward.model.logprobs import completion_logprobs, paired_prompts, shared_prompt_logprobs
from metareward.model.tiny import build_tiny

# (prompt length, chosen length, rejected length) per pair.
PAIRS = [(5, 3, 6), (9, 1, 4), (2, 7, 2)]


def _batch(vocab: int, pad_id: int):
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, vocab, (p,), generator=g) for p, _, _ in PAIRS]
    rows = [(prompts[i], torch.randint(3, vocab, (c,), generator=g)) for i, (_, c, _) in enumerate(PAIRS)]
    rows += [(prompts[i], torch.randint(3, vocab, (r,), generator=g)) for i, (_, _, r) in enumerate(PAIRS)]
    length = max(len(p) + len(c) for p, c in rows)
    ids = torch.full((len(rows), length), pad_id)
    mask, completion = torch.zeros_like(ids), torch.zeros_like(ids)
    for i, (p, c) in enumerate(rows):
        ids[i, length - len(p) - len(c) :] = torch.cat([p, c])
        mask[i, length - len(p) - len(c) :] = 1
        completion[i, length - len(c) :] = 1
    return ids, mask, completion


def test_shared_prompt_path_matches_rows_alone_with_gradients():
    base, tokenizer = build_tiny(seed=0)
    model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    ids, mask, completion = _batch(base.config.vocab_size, tokenizer.pad_token_id or 0)
    split = paired_prompts(ids, mask, completion)
    assert split is not None
    shared, counts = shared_prompt_logprobs(model, *split, pad_id=tokenizer.pad_token_id or 0)
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    shared_grads = torch.autograd.grad(shared.sum(), params)
    alone = torch.cat(
        [completion_logprobs(model, ids[i : i + 1], mask[i : i + 1], completion[i : i + 1])[0] for i in range(len(ids))]
    )
    alone_grads = torch.autograd.grad(alone.sum(), params)
    torch.testing.assert_close(shared, alone, rtol=1e-4, atol=1e-4)
    assert counts.tolist() == completion.sum(1).tolist()
    for a, b in zip(shared_grads, alone_grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_pair_logprobs_shares_prompts_and_still_works_with_gradient_checkpointing():
    from metareward.model.logprobs import pair_logprobs

    base, tokenizer = build_tiny(seed=0)
    model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    ids, mask, completion = _batch(base.config.vocab_size, tokenizer.pad_token_id or 0)
    model.train()
    plain, _ = completion_logprobs(model, ids, mask, completion)
    shared, _ = pair_logprobs(model, ids, mask, completion)
    torch.testing.assert_close(shared, plain, rtol=1e-4, atol=1e-4)
    # Checkpointed training keeps no KV cache, so the prompt cannot be shared; the rows are scored as they are.
    base.gradient_checkpointing_enable()
    base.enable_input_require_grads()
    checkpointed, _ = pair_logprobs(model, ids, mask, completion)
    checkpointed.sum().backward()
    torch.testing.assert_close(checkpointed, plain, rtol=1e-4, atol=1e-4)
    assert all(p.grad is not None for n, p in model.named_parameters() if "lora_" in n)
