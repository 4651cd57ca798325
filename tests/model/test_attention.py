"""sdpa_packed (model/attention.py): the one-token steps run on the key/value heads and give sdpa's numbers; every
other call is sdpa's own; `auto` picks it on CPU."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from metareward.model.attention import PACKED_SDPA
from metareward.model.compat import with_cache
from metareward.model.loading import ModelSpec, load_model_and_tokenizer
from metareward.model.tiny import build_tiny


def decode_logits(model, ids: torch.Tensor, mask: torch.Tensor, steps: int) -> torch.Tensor:
    """Logits of a prefill and then `steps` one-token steps (fed fixed tokens), as the sampler decodes."""
    cache, positions = DynamicCache(), (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **with_cache(cache))
        logits, last = [out.logits[:, -1]], positions[:, -1:]
        for step in range(steps):
            last, mask = last + 1, torch.cat([mask, mask.new_ones((len(ids), 1))], dim=-1)
            token = torch.full((len(ids), 1), 7 + step)
            out = model(input_ids=token, attention_mask=mask, position_ids=last, use_cache=True, **with_cache(cache))
            logits.append(out.logits[:, -1])
    return torch.stack(logits, dim=1).float()


def tiny_with(attention: str, dtype: torch.dtype):
    model, _ = build_tiny()
    model.set_attn_implementation(attention)
    return model.to(dtype)


IDS = torch.randint(10, 300, (3, 12), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_padded_steps_equal_sdpa_and_unpadded_ones_match_eager(dtype) -> None:
    padded = torch.ones_like(IDS)
    padded[0, :5] = 0  # the first row left-padded: sdpa packs these steps itself, so the numbers are equal
    packed, sdpa = tiny_with(PACKED_SDPA, dtype), tiny_with("sdpa", dtype)
    kept = padded.new_ones((3, 5), dtype=torch.bool)
    assert torch.equal(decode_logits(packed, IDS, padded, 4)[kept], decode_logits(sdpa, IDS, padded, 4)[kept])
    unpadded = torch.ones_like(IDS)  # no mask at all: sdpa asks torch for enable_gqa, we pack
    tolerance = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    eager = decode_logits(tiny_with("eager", dtype), IDS, unpadded, 4)
    torch.testing.assert_close(decode_logits(packed, IDS, unpadded, 4), eager, **tolerance)
    torch.testing.assert_close(decode_logits(packed, IDS[:1], unpadded[:1], 4), eager[:1], **tolerance)


def test_calls_longer_than_one_token_are_sdpas_own() -> None:
    packed, sdpa = tiny_with(PACKED_SDPA, torch.float32), tiny_with("sdpa", torch.float32)
    mask = torch.ones_like(IDS)
    mask[1, :3] = 0
    assert torch.equal(
        packed(input_ids=IDS, attention_mask=mask).logits, sdpa(input_ids=IDS, attention_mask=mask).logits
    )
    packed.train()
    packed(input_ids=IDS, attention_mask=mask).logits.sum().backward()  # training goes through sdpa, gradients flow
    assert all(p.grad is not None for p in packed.parameters() if p.requires_grad)


def test_auto_loads_it_on_cpu_and_the_embedded_model_decodes_as_eager(monkeypatch, embedded_checkpoint) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ModelSpec("some/model").attention() == PACKED_SDPA == ModelSpec("some/model", dtype="float32").attention()
    models = {
        attention: load_model_and_tokenizer(
            ModelSpec(str(embedded_checkpoint), dtype="float32", attn_implementation=attention)
        )[0]
        for attention in ("auto", "eager")
    }
    assert models["auto"].config._attn_implementation == PACKED_SDPA
    ids = torch.randint(100, 20000, (2, 24), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    got, want = (decode_logits(models[name], ids, mask, 6) for name in ("auto", "eager"))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
