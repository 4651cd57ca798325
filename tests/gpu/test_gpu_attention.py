"""Attention on CUDA without flash-attn: sdpa, which `attn_implementation: auto` picks there, gives the logits of the
eager implementation in bf16, left padding included (batched generation pads on the left). A small random
Llama-architecture checkpoint stands in for a real model."""

from __future__ import annotations

import pytest
import torch

from metareward.model.loading import ModelSpec, load_model_and_tokenizer

pytestmark = pytest.mark.gpu


def test_sdpa_logits_match_eager_in_bf16(random_llama) -> None:
    folder = str(random_llama(hidden_size=512, heads=8))
    ids = torch.randint(10, 300, (2, 48), generator=torch.Generator().manual_seed(2)).cuda()
    mask = torch.ones_like(ids)
    mask[0, :7] = 0  # the first row left-padded
    logits = {}
    for attention in ("eager", "sdpa"):
        model, _ = load_model_and_tokenizer(ModelSpec(folder, dtype="bfloat16", attn_implementation=attention))
        assert model.config._attn_implementation == attention
        with torch.no_grad():
            logits[attention] = model.cuda().eval()(input_ids=ids, attention_mask=mask).logits.float()
    kept = mask.bool()  # padded positions attend to nothing: their logits are undefined in either implementation
    torch.testing.assert_close(logits["sdpa"][kept], logits["eager"][kept], atol=3e-2, rtol=3e-2)
