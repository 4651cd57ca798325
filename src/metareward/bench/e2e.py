"""One full iteration of the demo (`+experiment=meta_reward`, num_iterations=1): wall time per phase, peak memory.

The config is composed from conf/ exactly as `python train.py` would (plus the overrides given), the run writes
to a temporary directory, and the figures come from its summary.json: per-phase seconds (generate, judge,
meta_judge, reference, train, evaluation callbacks...) and the whole iteration's seconds. Peak RSS is this
process's, which only ran the iteration (run the benchmark alone, as `python -m metareward.bench e2e`, for a clean
figure). `projected_demo_seconds` = 2 x the iteration (the demo runs 2; iteration 2 has no meta-judge phase, so
this overestimates).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metareward.bench.common import REPO_ROOT, emit, machine, peak_rss_mb, say

DEMO = ("+experiment=meta_reward",)
# Smoke size: the tiny model, no evaluation callbacks.
QUICK = (
    "+experiment=smoke",
    "callbacks.win_rate=null",
    "callbacks.judge_quality=null",
    "callbacks.dashboard=null",
    "callbacks.adapter_checkpoint=null",
)


def compose(overrides: Sequence[str], output_dir: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        fixed = [f"paths.root_dir={REPO_ROOT}", f"paths.output_dir={output_dir}"]
        return hydra_compose(config_name="train", overrides=fixed + list(overrides))


def main(experiment: Sequence[str], extra: Sequence[str], as_json: bool) -> dict[str, Any]:
    from metareward.run.training import train

    os.environ.setdefault("WANDB_MODE", "offline")
    logging.getLogger("lightning").setLevel(logging.WARNING)
    overrides = [*experiment, "num_iterations=1", "logger=none", "progress=false", *extra]
    say(f"e2e: python train.py {' '.join(overrides)}")
    with tempfile.TemporaryDirectory() as out:
        cfg = compose(overrides, Path(out) / "run")
        start = time.perf_counter()
        run_dir = train(cfg).run_dir
        seconds = time.perf_counter() - start
        summary = json.loads((run_dir / "summary.json").read_text())
    iteration = summary["iterations"][0]
    phases = {name: float(value) for name, value in iteration.get("phases", {}).items()}
    for name, value in phases.items():
        say(f"  {name}: {value:.1f} s")
    return emit(
        {
            "benchmark": "e2e",
            "overrides": overrides,
            "wall_seconds": seconds,
            "iteration_seconds": float(iteration.get("seconds", seconds)),
            "phase_seconds": phases,
            "projected_demo_seconds": 2 * seconds,
            "actor_pairs": iteration.get("actor_pairs"),
            "judge_pairs": iteration.get("judge_pairs"),
            "peak_rss_mb": peak_rss_mb(),
            "summary_peak_rss_mb": summary.get("peak_rss_mb"),
            "machine": machine(),
        },
        as_json,
    )
