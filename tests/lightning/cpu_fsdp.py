"""Test-only: Lightning's FSDPStrategy on CPU processes over gloo, to run trainer=fsdp end to end without a GPU.

Lightning refuses FSDPStrategy itself on a CPU accelerator (a subclass passes), torch needs `device_id=cpu` to
shard on CPU, and Lightning's full-state-dict context offloads to CPU, which on CPU-only FSDP hands back freed
memory; this module changes exactly those three things. Its class name does not start with "fsdp", so the config
check that refuses trainer=fsdp without CUDA lets it through. Used as
`trainer=fsdp trainer.strategy._target_=cpu_fsdp.CPUFSDPStrategy` with this folder on PYTHONPATH.
"""

from __future__ import annotations

import lightning.pytorch.strategies.fsdp as lightning_fsdp
import torch
from lightning.pytorch.strategies import FSDPStrategy


class CPUFSDPStrategy(FSDPStrategy):
    def _setup_model(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.distributed.fsdp import FullyShardedDataParallel

        wrapped = FullyShardedDataParallel(
            model,
            device_id=torch.device("cpu"),
            sharding_strategy=self.sharding_strategy,
            mixed_precision=self.mixed_precision_config,
            **self.kwargs,
        )
        return super()._setup_model(wrapped)  # already wrapped: Lightning only finishes its set-up


def _full_state_dict_on_cpu(module: torch.nn.Module, world_size: int, rank0_only: bool = True):
    from torch.distributed.fsdp import (
        FullOptimStateDictConfig,
        FullStateDictConfig,
        FullyShardedDataParallel,
        StateDictType,
    )

    return FullyShardedDataParallel.state_dict_type(
        module,
        StateDictType.FULL_STATE_DICT,
        FullStateDictConfig(offload_to_cpu=False, rank0_only=rank0_only),
        FullOptimStateDictConfig(offload_to_cpu=False, rank0_only=rank0_only),
    )


lightning_fsdp._get_full_state_dict_context = _full_state_dict_on_cpu
