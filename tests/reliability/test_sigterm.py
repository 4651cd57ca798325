"""SIGTERM, as a scheduler sends it on pre-emption, stops a real run within seconds while it generates, keeps what
was finished, prints the resume command, and the resumed run finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import run_to_end, smoke_train_command

# Long judgments (the tiny model never ends one early) make the judging phase last well past the signal.
SLOW_JUDGE = ("judge.max_new_tokens=1000", "dpo.max_completion_tokens=1000")
STOP_WITHIN_S = 15.0


@pytest.mark.slow
def test_sigterm_while_generating_stops_within_seconds_and_resumes(prompt_file: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline"}
    process = subprocess.Popen(
        smoke_train_command(prompt_file, run_dir, *SLOW_JUDGE),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = run_dir / "iterations" / "iter_01"
    deadline = time.monotonic() + 300
    while not (first / "responses.jsonl").exists():  # the actor has answered: the judge is generating now
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    stopped_after = time.monotonic() - sent
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert stopped_after < STOP_WITHIN_S, f"stopped {stopped_after:.1f} s after SIGTERM"
    assert not (first / "judgments.jsonl").exists(), "the judging phase ran to its end after SIGTERM"
    assert (first / "responses.jsonl").stat().st_size > 0 and "Traceback" not in stderr
    assert "resume=true" in stderr and f"hydra.run.dir={run_dir}" in stderr
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    written = (first / "responses.jsonl").stat().st_mtime_ns
    run_to_end(smoke_train_command(prompt_file, run_dir, *SLOW_JUDGE, "resume=true"), env)
    assert (first / "responses.jsonl").stat().st_mtime_ns == written, "the finished responses were made again"
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_sigterm_while_dpo_trains_stops_within_seconds_keeping_the_iterations_data(
    prompt_file: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    # Passes over the pairs: the DPO phase lasts well past the signal.
    args = smoke_train_command(prompt_file, run_dir, "dpo.epochs_per_iteration=2000")
    process = subprocess.Popen(
        args, env={**os.environ, "WANDB_MODE": "offline"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    pairs = run_dir / "iterations" / "iter_01" / "train_pairs.jsonl"
    deadline = time.monotonic() + 300
    while not pairs.exists():  # scored with the reference model: DPO trains next
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(2.0)  # into the training steps
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    stopped_after = time.monotonic() - sent
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert stopped_after < STOP_WITHIN_S, f"stopped {stopped_after:.1f} s after SIGTERM"
    assert "Traceback" not in stderr and "resume=true" in stderr
    assert pairs.stat().st_size > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and not summary["iterations"], "iteration 1 cannot have finished"
