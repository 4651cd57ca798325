"""A prompt pool of 200,000 lines: checked before the run, loaded and sampled in seconds, in bounded memory.

The bounds are generous (this shared 2-core machine is noisy); they catch a reader that is quadratic in the pool or
holds copies of the file, not a slow second. The figures are printed (`pytest -s`) for docs/reliability.md.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import pytest
from helpers import compose

import metareward.config.build  # imported here, so the preflight's first call times the check, not imports
import metareward.run.training  # noqa: F401
from metareward.engine.prompt_pool import load_prompt_pool
from metareward.run.preflight import preflight_problems

LINES = 200_000
SECONDS = 60.0  # measured here: a few seconds for the check, the load and one sample together
MEMORY_MB = 1024.0


@pytest.fixture(scope="module")
def big_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pool") / "prompts.jsonl"
    with path.open("w") as out:
        for i in range(LINES):
            out.write(json.dumps({"id": f"p{i}", "instruction": f"Question number {i}: explain item {i * 7}."}) + "\n")
    return path


@pytest.mark.slow
def test_a_pool_of_200000_lines_is_checked_loaded_and_sampled_in_seconds_and_bounded_memory(big_pool: Path) -> None:
    cfg = compose("+experiment=smoke", f"data.path={big_pool}", "data.prompts_per_iteration=64")
    started = time.perf_counter()
    problems = preflight_problems(cfg)  # what train.py runs before anything else: reads the whole pool once
    checked = time.perf_counter() - started
    pool = load_prompt_pool(str(big_pool))
    first = pool.sample(1, 64, seed=0)
    seconds = time.perf_counter() - started
    del pool
    tracemalloc.start()  # memory apart: tracing slows allocation several times over
    pool = load_prompt_pool(str(big_pool))
    pool.sample(1, 64, seed=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_mb = peak / 2**20
    print(
        f"\n200,000-line pool: preflight {checked:.1f} s, preflight + load + first sample {seconds:.1f} s, "
        f"peak traced memory of load + sample {peak_mb:.0f} MB"
    )
    assert problems == []
    assert len(pool.prompts) == LINES and sum(pool.drops.values()) == 0
    assert len({p.id for p in first}) == 64
    assert {p.id for p in pool.sample(2, 64, seed=0)}.isdisjoint(p.id for p in first)
    assert seconds < SECONDS, f"{seconds:.1f} s"
    assert peak_mb < MEMORY_MB, f"{peak_mb:.0f} MB"
