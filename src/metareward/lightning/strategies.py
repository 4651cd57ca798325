"""Sharded strategies (FSDP, DeepSpeed ZeRO) around a model that also generates between training steps.

Training goes through the strategy's wrapped forward. The data engine and the evaluation callbacks instead call the
PEFT model directly, once per generated token and a different number of times on each rank (each rank makes its own
share of the requests). Under FSDP or ZeRO-3 every such call would gather its layers' shards from all ranks, a
collective that ranks making fewer calls never join: a deadlock. `full_weights` gathers the full weights once on
every rank for the duration of such work, and nothing inside it communicates.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import lightning as L
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy
from torch import nn


def decoder_layer_policy(layer_classes: Sequence[str]):
    """The FSDP auto-wrap policy of conf/trainer/fsdp.yaml: one FSDP unit per decoder layer, matched by class name
    (so the YAML names no Python objects), and, in a model with frozen weights (LoRA), one per trainable leaf module
    (a LoRA A or B matrix).

    FSDP flattens a unit's parameters into one tensor of a single dtype: the LoRA matrices stay float32 while the
    frozen base weights are bfloat16, so they get units of their own. With full fine-tuning every weight trains in
    one dtype and only the decoder layers are units (a leaf unit would also split tied embeddings from the head).
    """
    from torch.distributed.fsdp.wrap import CustomPolicy

    names = frozenset(layer_classes)
    frozen: list[bool] = []  # read from the first module FSDP shows the policy: the root

    def wrap(module: nn.Module) -> bool:
        if not frozen:
            frozen.append(any(not p.requires_grad for p in module.parameters()))
        return is_fsdp_unit(module, names, trainable_leaves=frozen[0])

    return CustomPolicy(wrap)


def is_fsdp_unit(module: nn.Module, layer_classes: frozenset[str], trainable_leaves: bool = True) -> bool:
    """A decoder layer (by class name), or with `trainable_leaves` a leaf module with trainable parameters."""
    if type(module).__name__ in layer_classes:
        return True
    leaf = next(module.children(), None) is None
    return trainable_leaves and leaf and any(p.requires_grad for p in module.parameters(recurse=False))


def fsdp_root(trainer: L.Trainer) -> nn.Module | None:
    """The FullyShardedDataParallel root module under trainer=fsdp once the model is wrapped, else None."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    model = trainer.strategy.model if isinstance(trainer.strategy, FSDPStrategy) else None
    return model if isinstance(model, FullyShardedDataParallel) else None


@contextmanager
def full_weights(trainer: L.Trainer) -> Iterator[None]:
    """Every rank holds the complete, current weights until the block ends; changes made inside are discarded.

    FSDP: its full parameters are summoned. DeepSpeed ZeRO-3: DeepSpeed's own context gathers the parameters and
    lifts its per-module fetch and release hooks. Other strategies (one device, DDP, ZeRO-2, which shards only
    gradients and optimizer state) hold full weights anyway. Every rank must enter the block: it is a collective.
    """
    strategy = trainer.strategy
    root = fsdp_root(trainer)
    if root is not None:
        with fsdp_full_weights(root):
            yield
    elif isinstance(strategy, DeepSpeedStrategy) and strategy.zero_stage_3:
        from deepspeed.runtime.zero import unwrap_model_for_generation  # only ever imported under trainer=deepspeed

        with unwrap_model_for_generation(strategy.deepspeed_engine):
            yield
    else:
        yield


@contextmanager
def fsdp_full_weights(root: nn.Module) -> Iterator[None]:
    """The full parameters of every FSDP unit below `root`, gathered once, for direct calls of the inner modules.

    Summoning alone is not enough: an FSDP unit's own forward frees its gathered parameters when it returns, and the
    next call gathers them again (a collective per layer and token). While summoned, each unit forwards straight to
    the module it wraps, whose parameters are then the full tensors.
    """
    from torch.distributed.fsdp import FullyShardedDataParallel

    units = FullyShardedDataParallel.fsdp_modules(root)
    if not units:
        yield
        return
    with FullyShardedDataParallel.summon_full_params(root, writeback=False):
        for unit in units:
            unit.forward = unit.module.forward
        try:
            yield
        finally:
            for unit in units:
                del unit.forward
