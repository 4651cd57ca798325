"""Which floating-point type the model's weights are kept and computed in: `model.dtype=auto` picks by the hardware.

bfloat16 where the hardware multiplies it natively: a CUDA GPU that supports it, or a CPU with AMX-BF16 or
AVX512-BF16 (about 7x its float32 matrix-product rate on the development machine); float32 elsewhere, where
bfloat16 would be emulated and slower. Under LoRA the frozen base weights take this dtype while PEFT keeps the
adapters, their gradients and the optimizer state in float32; the trainer's `32-true` adds no casts of its own, and
the DPO step and its reference pass compute the adapters in bfloat16 (`RoleAdapters.compute_context`).
Full fine-tuning resolves `auto` to float32: weights that train need float32 master copies, since an update of
lr 1e-6 to a weight near 0.02 is below bfloat16's resolution and would be lost.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

AUTO = "auto"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CPU_BF16_FEATURES = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class ResolvedDtype:
    """The dtype `model.dtype` stands for on this machine, and why (logged at start-up)."""

    name: str
    reason: str

    @property
    def torch(self) -> torch.dtype:
        return DTYPES[self.name]


def resolve_dtype(requested: str, finetune: str = "lora") -> ResolvedDtype:
    """`requested` itself, unless it is `auto`: then bfloat16 where the hardware computes it natively and the
    weights do not train, else float32."""
    if requested != AUTO:
        return ResolvedDtype(requested, "set in model.dtype")
    if finetune == "full":
        return ResolvedDtype("float32", "full fine-tuning keeps float32 weights (bfloat16 would drop small updates)")
    where = native_bf16()
    if where:
        return ResolvedDtype("bfloat16", f"{where} computes bfloat16 natively")
    return ResolvedDtype("float32", f"no native bfloat16 on {device_name()}")


@functools.cache
def native_bf16() -> str | None:
    """The device that would run the model, described, if it multiplies bfloat16 natively; None if not."""
    if torch.cuda.is_available():
        return device_name() if torch.cuda.is_bf16_supported(including_emulation=False) else None
    features = cpu_features()
    found = [name for name in CPU_BF16_FEATURES if name in features]
    return f"this CPU ({device_name()}, {' and '.join(found)})" if found else None


def cpu_features() -> set[str]:
    """The CPU's instruction-set features as torch sees them, or the flags Linux lists where torch cannot say."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        return {name for name, present in capabilities().items() if present is True}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return set()
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(flags.partition(":")[2].split())


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return "this CPU"
