"""`sdpa_packed`: transformers' sdpa attention, with every one-token step run on the key/value heads.

In a grouped-query model (SmolLM2-135M: 9 query heads over 3 key/value heads) a decoding step has one query per
head. transformers packs the query heads that share a key/value head into one (batch, kv_heads, group, dim) query
only when the step has an attention mask; without one (rows that need no padding, a batch of one) it asks torch
for `enable_gqa`, whose CPU kernel ran the same step 6x slower here (2.6 ms against 0.42 ms per layer for 16 rows
of 330 tokens in bfloat16). This implementation packs every one-token step, masked or not, and hands every other
call (prefill, training) to transformers' sdpa unchanged. The arithmetic is the same kernel on the same numbers,
so the outputs equal sdpa's packed path; `auto` picks it on CPU (model/loading.py).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

PACKED_SDPA = "sdpa_packed"
# The forward keyword that hands a decoding step the prompts held in shared parts (generation/kv_cache.py).
SHARED_PROMPT = "shared_prompt"


def packed_sdpa_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention output as (batch, 1, heads, dim) for a one-token step; otherwise whatever sdpa returns."""
    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, steps, dim = query.shape
    shared = kwargs.get(SHARED_PROMPT)
    if shared is not None and steps == 1:
        output = attend_after_shared_prompt(module.layer_idx, query, key, value, attention_mask, scaling, shared)
        return output.reshape(batch, heads, 1, value.shape[-1]).transpose(1, 2).contiguous(), None
    shared_mask = attention_mask is None or attention_mask.shape[1] == 1
    plain = kwargs.get("softcap") is None and kwargs.get("position_bias") is None
    if steps != 1 or groups == 1 or not shared_mask or not plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    packed = query.reshape(batch, heads // groups, groups, dim)
    output = torch.nn.functional.scaled_dot_product_attention(
        packed, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling
    )
    return output.reshape(batch, heads, 1, value.shape[-1]).transpose(1, 2).contiguous(), None


def attend_after_shared_prompt(
    layer: int,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None,
    shared: Any,
) -> torch.Tensor:
    """One decoding step's attention over a context held in parts (generation/kv_cache.py: SharedPrompt): each part
    of the prompts once for all the rows that read it, then each row's own tokens (`key`, `value`), the partial
    results joined by their log-sum-exp. Returns (batch, kv_heads, group, dim) in the query's dtype."""
    batch, kv_heads, dim = query.shape[0], key.shape[1], query.shape[-1]
    packed = query.reshape(batch, kv_heads, -1, dim)
    group = packed.shape[2]
    output, lse = _attend(packed, key, value, additive_mask(attention_mask, query.dtype), scaling)
    padded = torch.cat([packed, packed.new_zeros((1, kv_heads, group, dim))])  # slot `batch`: no row
    for part in shared.parts:
        rows, width = part.slots.shape
        queries = padded[part.slots].transpose(1, 2).reshape(rows, kv_heads, width * group, dim)
        out, part_lse = _attend(queries, part.keys[layer], part.values[layer], part.mask, scaling)
        out = out.reshape(rows, kv_heads, width, group, dim).transpose(1, 2).reshape(rows * width, kv_heads, group, dim)
        part_lse = part_lse.reshape(rows, kv_heads, width, group).transpose(1, 2).reshape(rows * width, kv_heads, group)
        out = torch.cat([out, out.new_zeros((1, kv_heads, group, dim))])[part.where]  # the last entry: no part row
        part_lse = torch.cat([part_lse, part_lse.new_full((1, kv_heads, group), -math.inf)])[part.where]
        output, lse = _joined(output, lse, out.float(), part_lse)
    return output.to(query.dtype)


def _attend(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, scaling: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output (float32) and the log-sum-exp of each query's scores: torch's flash kernel on the CPU, which
    returns both, and the same arithmetic written out elsewhere."""
    if query.device.type == "cpu":
        output, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, attn_mask=mask, scale=scaling
        )
        return output.float(), lse
    scores = query.float() @ key.float().transpose(-1, -2) * (scaling or query.shape[-1] ** -0.5)
    scores = scores if mask is None else scores + mask.float()
    lse = torch.logsumexp(scores, dim=-1)
    return torch.softmax(scores, dim=-1) @ value.float(), lse


def _joined(
    out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor, lse_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two attention results over disjoint keys, joined into the one over all of them."""
    top = torch.maximum(lse_a, lse_b)
    weight_a, weight_b = torch.exp(lse_a - top), torch.exp(lse_b - top)
    total = weight_a + weight_b
    output = (out_a * weight_a.unsqueeze(-1) + out_b * weight_b.unsqueeze(-1)) / total.unsqueeze(-1)
    return output, top + torch.log(total)


def additive_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A boolean mask (True: attend) as 0 / -inf in `dtype`; an additive one unchanged."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, -math.inf)


AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_SDPA, sdpa_mask)
