"""The benchmarks keep freed memory in their process (glibc's malloc): a large tensor freed leaves its pages in the
heap for the next one, instead of going back to the system; where the user tuned the allocator, it is left alone."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import subprocess
import sys

import pytest
from helpers import REPO_ROOT

from metareward.bench.allocator import keep_freed_memory

LIBC = ctypes.util.find_library("c")

# In a fresh process (the setting is the process's): a 200 MB tensor made and freed, then what malloc holds.
PROBE = """
import ctypes, json, sys
import torch
from metareward.bench.allocator import freed_memory_kept, keep_freed_memory

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
tensor = torch.ones(50_000_000)  # 200 MB
during = libc.mallinfo2()
del tensor
after = libc.mallinfo2()
print(json.dumps({"kept": kept, "reported": freed_memory_kept(), "mmapped_during": during.hblkhd,
                  "free_in_heap_after": after.fordblks}))
"""


def probe(mode: str, **env: str) -> dict:
    environment = {"PYTHONPATH": str(REPO_ROOT / "src"), **env}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=environment, check=True, timeout=120
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


pytestmark = pytest.mark.skipif(
    not LIBC or not hasattr(ctypes.CDLL(LIBC), "mallinfo2"), reason="needs glibc 2.33 or later (mallinfo2)"
)


def test_a_freed_tensor_stays_in_the_heap_once_set() -> None:
    plain, kept = probe("plain"), probe("keep")
    assert not plain["kept"] and not plain["reported"]
    assert plain["mmapped_during"] >= 200_000_000 and plain["free_in_heap_after"] < 50_000_000  # given back
    assert kept["kept"] and kept["reported"]
    assert kept["mmapped_during"] < 50_000_000 and kept["free_in_heap_after"] >= 200_000_000  # kept for reuse


@pytest.mark.parametrize("name", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "LD_PRELOAD"])
def test_an_allocator_the_user_tuned_is_left_alone(name: str) -> None:
    assert keep_freed_memory({name: "1"}) is False  # returns before touching this (the test's) process


def test_a_run_under_the_users_glibc_tunables_keeps_glibcs_own_behaviour() -> None:
    tuned = probe("keep", GLIBC_TUNABLES="glibc.malloc.trim_threshold=134217728")
    assert not tuned["kept"] and tuned["mmapped_during"] >= 200_000_000
