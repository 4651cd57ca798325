"""A real Hydra multirun of two settings on the tiny model, then the comparison table over it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT


def smoke_sweep(prompt_file: Path) -> list[str]:
    """`python train.py -m +experiment=smoke` on `prompt_file`: a sweep's command before its own settings."""
    return [sys.executable, str(REPO_ROOT / "train.py"), "-m", "+experiment=smoke", f"data.path={prompt_file}"]


@pytest.mark.slow
def test_tiny_multirun_and_compare(prompt_file: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    command = [
        *smoke_sweep(prompt_file),
        "+sweep=meta_judge",
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


@pytest.mark.slow
def test_a_sweep_runs_as_submitit_jobs_and_the_slurm_launcher_composes(prompt_file: Path, tmp_path: Path) -> None:
    """hydra/launcher=submitit_local runs each point as a submitit job (the same machinery submitit_slurm uses on a
    cluster, one SLURM job per run); submitit_slurm itself needs a cluster, so it is composed, not run."""
    sweep_dir = tmp_path / "sweep"
    command = [
        *smoke_sweep(prompt_file),
        "seed=0,1",
        "num_iterations=1",
        "logger=none",
        "callbacks.win_rate=null",
        "callbacks.judge_quality=null",
        "callbacks.dashboard=null",
        "hydra/launcher=submitit_local",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    done = subprocess.run(command, cwd=tmp_path, check=False, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Submitit 'local' sweep output dir" in done.stdout + done.stderr
    summaries = sorted(sweep_dir.glob("*/summary.json"))
    assert [p.parent.name for p in summaries] == ["0", "1"]
    assert all('"status": "finished"' in p.read_text() for p in summaries)
    assert len(list((sweep_dir / ".submitit").glob("[0-9]*"))) == 2  # one submitit job per run

    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base=None):
        cfg = compose("train", ["+experiment=smoke", "hydra/launcher=submitit_slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("submitit_launcher.SlurmLauncher")
