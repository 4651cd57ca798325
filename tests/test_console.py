"""What a run prints: its own lines once each in one format, rounded figures, no library advertisements or
banners, a results table at the end with where the files went; a fault ends in one line saying what happened and
how to resume."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import REPO_ROOT, run_to_end, smoke_train_command

from metareward.compare.run_report import percent, results_table, rounded
from metareward.run.console import closing_report

ITERATIONS = [
    {
        "iteration": 1,
        "actor_pairs": 12,
        "judge_pairs": 3,
        "seconds": 61.7,
        "train": {"loss": 0.69301, "reward_accuracy": 0.5833},
        "eval": {"win_rate": 49.87517033904902, "lc_win_rate": None, "seed_judge_score": 2.6458, "avg_length": 412.6},
    },
    {"iteration": 2, "actor_pairs": 9, "judge_pairs": 0, "seconds": 58.2, "train": {"loss": 0.6871}},
]


def test_figures_are_rounded_to_what_they_tell_apart():
    assert rounded(49.87517033904902, 1) == "49.9" and rounded(0.000321, 3) == "0.000321"
    assert rounded(None) == "-" and rounded(float("nan")) == "-" and rounded(0.0) == "0.000"
    assert percent(49.87517) == "49.9%" and percent(None) == "-"


def test_the_results_table_has_a_row_per_iteration_and_drops_empty_columns():
    lines = results_table(ITERATIONS).splitlines()
    assert lines[0].split() == [
        "iteration",
        "pairs",
        "loss",
        "reward",
        "acc",
        "win",
        "%",
        "objective",
        "length",
        "time",
        "s",
    ]
    assert lines[1].split() == ["1", "12+3", "0.693", "0.58", "49.9", "2.65", "413", "62"]
    assert lines[2].split() == ["2", "9+0", "0.687", "-", "-", "-", "-", "58"]
    assert "LC" not in lines[0]  # no iteration has an LC win rate
    assert len({len(line) for line in lines[:3]}) == 1  # aligned


def test_the_closing_report_says_where_everything_is(tmp_path: Path):
    (tmp_path / "summary.json").write_text(json.dumps({"iterations": ITERATIONS}))
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "win_rate.png").write_bytes(b"png")
    offline = tmp_path / "wandb" / "offline-run-20261205_001733-abc"
    offline.mkdir(parents=True)
    report = closing_report(tmp_path)
    assert report.splitlines()[0].startswith("iteration  pairs")
    assert f"run directory: {tmp_path}" in report and f"plots: {tmp_path / 'plots'}" in report
    assert report.endswith(f"wandb (offline): {offline}; upload it with: wandb sync {offline}")


@pytest.mark.slow
def test_a_run_prints_each_line_once_and_ends_with_its_table(prompt_file: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline"}
    env.pop("WANDB_SILENT", None)
    done = run_to_end(smoke_train_command(prompt_file, run_dir, "logger=wandb"), env)  # wandb not silenced here
    printed = done.stdout + done.stderr
    for noise in ("Tip:", "litlogger", "wandb: WARNING", "Tracking run with wandb", "INFO: GPU available"):
        assert noise not in printed, noise
    assert printed.count("GPU available") == 1  # Lightning's lines once, in the run's format
    assert "done in" in printed and "{'loss'" not in printed  # figures rounded, no raw dicts
    lines = done.stdout.strip().splitlines()
    tail = lines[next(i for i, line in enumerate(lines) if line.startswith("iteration  pairs")) :]
    assert [line.split()[0] for line in tail[1:3]] == ["1", "2"]  # the table closes the run, after every log line
    assert tail[-1].startswith("wandb (offline): ") and "wandb sync" in tail[-1]


@pytest.mark.slow
def test_a_fault_ends_in_one_line_with_what_happened_and_the_resume_command(prompt_file: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "tests"), "WANDB_MODE": "offline"}
    command = smoke_train_command(
        prompt_file, run_dir, "+callbacks.fault._target_=faulty_callback.FailsAfterFirstIteration"
    )
    done = subprocess.run(command, env=env, check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("failed: RuntimeError: a fault for the test (the traceback above); finished stages are kept")
    assert last.endswith(f"hydra.run.dir={run_dir} resume=true")
    assert "Traceback" in done.stderr  # the details stay, for a bug report
    assert (run_dir / "iterations" / "iter_01" / "pairs.jsonl").is_file()
