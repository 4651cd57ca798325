"""Crash-safety: a run killed with SIGKILL at several points resumes and ends with the pairs of an unbroken run."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import environment, kill_when, run_to_end, smoke_train_command, stage_texts, write_prompts


def adapter_bytes(run_dir: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(run_dir)): path.read_bytes()
        for path in sorted((run_dir / "checkpoints").glob("iter_*/*/adapter_model.safetensors"))
    }


@pytest.fixture(scope="module")
def shared_prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prompt file for every run of this module: the kill tests compare their runs with one uninterrupted run."""
    questions = [
        "Name three fruits.",
        "Explain gravity simply.",
        "Write a haiku about rain.",
        "What is 7 times 8?",
        "Give three tips for sleeping well.",
        "List four uses of a paperclip.",
    ]
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    write_prompts(path, questions)
    return path


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory, shared_prompts: Path) -> Path:
    """One uninterrupted smoke run, the reference for every kill test of this module."""
    run_dir = tmp_path_factory.mktemp("unbroken") / "run"
    run_to_end(smoke_train_command(shared_prompts, run_dir))
    return run_dir


@pytest.mark.slow
def test_killed_runs_resume_without_redoing_finished_stages(
    shared_prompts: Path, tmp_path: Path, unbroken: Path
) -> None:
    prompt_file, broken = shared_prompts, tmp_path / "broken"

    first = broken / "iterations" / "iter_01"
    # 1: killed right after iteration 1's responses were written (mid data making).
    kill_when(smoke_train_command(prompt_file, broken), first / "responses.jsonl")
    responses_written = (first / "responses.jsonl").stat().st_mtime_ns
    # 2: resumed, then killed once iteration 1 is trained and checkpointed (during iteration 2).
    kill_when(smoke_train_command(prompt_file, broken, "resume=true"), broken / "checkpoints" / "last.ckpt")
    assert (first / "responses.jsonl").stat().st_mtime_ns == responses_written, "a finished stage was recomputed"
    trained_first = (first / "train_pairs.jsonl").stat().st_mtime_ns
    # 3: resumed to the end.
    run_to_end(smoke_train_command(prompt_file, broken, "resume=true"))
    assert (first / "train_pairs.jsonl").stat().st_mtime_ns == trained_first, "iteration 1 was made again"

    assert stage_texts(broken) == stage_texts(unbroken)
    summary = json.loads((broken / "summary.json").read_text())
    assert summary["status"] == "finished" and [it["iteration"] for it in summary["iterations"]] == [1, 2]
    reference = json.loads((unbroken / "summary.json").read_text())
    assert [it["actor_pairs"] for it in summary["iterations"]] == [it["actor_pairs"] for it in reference["iterations"]]


def test_resume_refuses_a_changed_config(prompt_file: Path, tmp_path: Path) -> None:
    run_to_end(smoke_train_command(prompt_file, tmp_path, "num_iterations=1"))
    done = subprocess.run(
        smoke_train_command(prompt_file, tmp_path, "num_iterations=1", "resume=true", "pairs.rho=0.1"),
        check=False,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2 and "pairs.rho (was 0.4, now 0.1)" in done.stderr and "Traceback" not in done.stderr


def test_resume_needs_an_earlier_run(prompt_file: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        smoke_train_command(prompt_file, tmp_path / "new", "resume=true"),
        check=False,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2 and "holds no run to resume" in done.stderr


@pytest.mark.slow
def test_ctrl_c_stops_keeps_artifacts_and_says_how_to_resume(prompt_file: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = smoke_train_command(prompt_file, run_dir)
    process = subprocess.Popen(args, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marker = run_dir / "iterations" / "iter_01" / "responses.jsonl"
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-2000:]
    assert "resume=true" in stderr and f"hydra.run.dir={run_dir}" in stderr
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    run_to_end(smoke_train_command(prompt_file, run_dir, "resume=true"))
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_runs_killed_during_the_dpo_step_and_during_evaluation_resume_to_the_same_pairs_and_adapters(
    shared_prompts: Path, tmp_path: Path, unbroken: Path
) -> None:
    prompt_file, broken = shared_prompts, tmp_path / "broken"
    # 1: killed while iteration 1 trains (its scored pairs are written just before the DPO steps start).
    kill_when(smoke_train_command(prompt_file, broken), broken / "iterations" / "iter_01" / "train_pairs.jsonl")
    assert not (broken / "checkpoints" / "last.ckpt").exists(), "the kill came after iteration 1 was trained"
    # 2: resumed, then killed while iteration 2 is evaluated (its adapters are saved just before evaluation).
    kill_when(smoke_train_command(prompt_file, broken, "resume=true"), broken / "checkpoints" / "iter_02" / "judge")
    assert not (broken / "summary.json").read_text().count('"iteration": 2'), "iteration 2 was already summarised"
    # 3: resumed to the end.
    run_to_end(smoke_train_command(prompt_file, broken, "resume=true"))
    assert stage_texts(broken) == stage_texts(unbroken)
    assert adapter_bytes(broken) == adapter_bytes(unbroken) and len(adapter_bytes(unbroken)) == 4
    assert json.loads((broken / "summary.json").read_text())["status"] == "finished"
