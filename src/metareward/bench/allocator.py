"""Freed memory kept in the benchmarks' process, so that a step's tensors reuse pages instead of asking the system
for new ones.

glibc's malloc hands every block of 32 MiB or more (at start, of 128 KiB or more) straight from the system and gives
it back when freed, and returns the free top of its heap as well; a new block then starts on fresh pages, which the
kernel zeroes on first touch (on the 2-core development VM, a float32-to-bfloat16 copy of 131 MB took 40 ms into a
new block and 21 ms into one already touched). With blocks under 1 GiB taken from the heap and the heap kept, TRL's
DPO step, which allocates the logits of every position, took 27-31% less time there, and ours the same (`bench dpo`:
8.3 s either way), so the benchmarks set it for both sides. `train.py` does not: `make train`'s command was 3-5%
faster with it (108.7 and 108.6 s against 114.2 and 112.2 s), but a process keeps up to 2 GiB more, and a
two-process full fine-tuning run with vLLM peaked 2.8 GB higher (rank 0: 8.5 GB against 6.5), and in CI on a 24 GB
machine one such run lost a process to SIGKILL, most likely for memory. docs/models.md says how a user sets it for
a run through glibc's own variables.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)
MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap (glibc's dynamic threshold stops at 32 MiB)
TRIM_THRESHOLD = (1 << 31) - 1  # free heap top kept up to 2 GiB
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "LD_PRELOAD")
_kept = False  # whether this process set it (the setting is the process's, as this flag)


def keep_freed_memory(environ: Mapping[str, str] = os.environ) -> bool:
    """Set glibc's malloc to keep freed memory for reuse; whether it was set. Left alone where the user tuned the
    allocator (its environment variables, or another allocator preloaded) or where the C library is not glibc."""
    if any(environ.get(name) for name in USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt)
        return False
    global _kept
    _kept = _kept or (
        bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    )
    return _kept


def freed_memory_kept() -> bool:
    """Whether `keep_freed_memory` set the allocator in this process (a benchmark records it with its figures)."""
    return _kept
