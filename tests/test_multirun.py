"""A real Hydra multirun of two settings on the tiny model, then the comparison table over it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT


@pytest.mark.slow
def test_tiny_multirun_and_compare(prompt_file: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable,
        str(REPO_ROOT / "train.py"),
        "-m",
        "+experiment=smoke",
        "+sweep=meta_judge",
        f"data.path={prompt_file}",
        "judge.num_judgments=2,3",
        "pairs.rho=0",
        "num_iterations=1",
        "data.prompts_per_iteration=2",
        "actor.num_responses=2",
        "logger=none",
        # keep the per-iteration evaluation callbacks tiny: this test is about the sweep machinery
        "evaluation.num_prompts=2",
        "evaluation.max_new_tokens=8",
        "evaluation.judge_quality.num_pairs=2",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    done = subprocess.run(command, cwd=tmp_path, check=False, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = (done.stdout + done.stderr).lower()
    assert "deprecat" not in printed, "a run prints a deprecation notice:\n" + done.stderr[-3000:]
    assert sorted(p.parent.name for p in sweep_dir.glob("*/summary.json")) == ["0", "1"]

    compare = [sys.executable, "-m", "metareward.compare", str(sweep_dir), "--plot", str(tmp_path / "sweep.png")]
    table = subprocess.run(compare, check=False, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:2] == ["run", "judge.num_judgments"] and "train.loss" in lines[0]
    assert [line.split()[:3] for line in lines[2:4]] == [["0", "2", "finished"], ["1", "3", "finished"]]
    assert (tmp_path / "sweep.png").is_file()
