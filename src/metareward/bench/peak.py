"""The machine's own limit: its measured matrix-product rate per dtype, and the share of it a benchmark reached.

Model FLOPs follow the usual accounting (Kaplan et al. 2020; Chowdhery et al. 2022, Appendix B): a forward pass
costs 2 FLOPs per weight of every matrix the tokens go through (attention and MLP projections and the output head;
the embedding lookup is free), a backward pass 2 more for the input gradients and 2 more for the weight gradients
of the weights that train. Attention scores (about 2 x layers x sequence x hidden per token) and recomputation
under gradient checkpointing are left out, so the fraction is a lower bound of the machine's use.
"""

from __future__ import annotations

import time

import torch
from torch import nn

PEAK_SIZE = 2048


def matmul_peak_gflops(dtype: torch.dtype, size: int = PEAK_SIZE, repeats: int = 5) -> float:
    """The best GFLOP/s of `repeats` size x size x size products in `dtype` on the CPU, after one warm-up."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def matrix_weights(model: nn.Module) -> tuple[int, int]:
    """(weights in the matrices a token goes through, the share of them that trains): every nn.Linear and the
    output head (tied or not); embeddings are lookups."""
    total = trained = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            count = module.weight.numel()
            total += count
            trained += count if module.weight.requires_grad else 0
    return total, trained


def forward_flops_per_token(model: nn.Module) -> float:
    return 2.0 * matrix_weights(model)[0]


def training_flops_per_token(model: nn.Module) -> float:
    """Forward, input gradients through every matrix, weight gradients of the trained ones (LoRA: the adapters)."""
    total, trained = matrix_weights(model)
    return 4.0 * total + 2.0 * trained


def share_of_peak(flops: float, seconds: float, peak_gflops: float) -> float:
    return flops / seconds / 1e9 / peak_gflops
