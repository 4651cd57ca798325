"""The vocabulary projection gets its hidden states as one contiguous block.

transformers computes logits for the last `logits_to_keep` positions by slicing the hidden states
(`hidden[:, -k:]`), a strided view. When that view needs a gradient, torch's matmul does not fold it into one
matrix product: it broadcasts the projection matrix to every row of the batch, copies it (`[rows, hidden, vocab]`)
and runs a batched product, forward and backward. In the DPO step's prompt pass (`pair_logprobs`, 4 prompts) that
was about 0.9 s of copying per step with SmolLM2's 49,152 x 576 matrix in bfloat16 on this project's 2-core CPU
(a profile of `bench dpo`), for products that take 0.1 s. A pre-hook hands the projection a contiguous copy of
the few positions it scores, so it is one matrix product again; the numbers are the same
(tests/model/test_projection.py).
"""

from __future__ import annotations

from typing import Any

from torch import nn


def contiguous_projection_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook: the first positional argument made contiguous, the rest unchanged."""
    if not args or not hasattr(args[0], "is_contiguous") or args[0].is_contiguous():
        return args
    return (args[0].contiguous(), *args[1:])


def feed_projection_contiguously(model: nn.Module) -> None:
    """Install `contiguous_projection_input` on the model's output embeddings (if it has a linear one)."""
    projection = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if isinstance(projection, nn.Linear):
        projection.register_forward_pre_hook(contiguous_projection_input)
