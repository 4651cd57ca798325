"""SIGTERM (a scheduler's pre-emption) and SIGINT (Ctrl-C) in the middle of every phase of an iteration stop a real
run within seconds, leave nothing half-written, and the resumed run makes the same stages and pairs as a run that
was never interrupted. The signal is sent from inside the phase (tests/interrupting.py), so it lands there on any
machine; iteration 2 is interrupted, so the resumption also restarts from iteration 1's checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import environment_with_tests, run_to_end, smoke_train_command, stage_texts, write_prompts
from interrupting import PHASES

STOP_WITHIN_S = 15.0
# The judge trains in both iterations, so iteration 2 has a meta-judging phase too.
BOTH_JUDGED = ("schedule.judge_training_iterations=[1,2]",)
EXIT_CODES = {"SIGTERM": 128 + signal.SIGTERM, "SIGINT": 130}


def interrupting(marker: Path, phase: str, send: str) -> tuple[str, ...]:
    return (
        "+callbacks.interrupt._target_=interrupting.InterruptDuring",
        f"+callbacks.interrupt.phase={phase}",
        f"+callbacks.interrupt.send={send}",
        "+callbacks.interrupt.iteration=2",
        f"+callbacks.interrupt.marker={marker}",
    )


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    questions = ["Name three fruits.", "Explain gravity simply.", "Write a haiku about rain.", "What is 7 times 8?"]
    return write_prompts(tmp_path_factory.mktemp("prompts") / "prompts.jsonl", questions)


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory, prompts: Path) -> dict[str, str]:
    run_dir = tmp_path_factory.mktemp("unbroken") / "run"
    run_to_end(smoke_train_command(prompts, run_dir, *BOTH_JUDGED), environment_with_tests())
    return stage_texts(run_dir)


def leftovers(run_dir: Path) -> list[str]:
    """Files of a write that did not finish: temporary files and partial folders beside their targets."""
    return [str(p.relative_to(run_dir)) for p in run_dir.rglob(".*") if p.name.endswith((".tmp", ".partial"))]


@pytest.mark.slow
@pytest.mark.parametrize("send", sorted(EXIT_CODES))
@pytest.mark.parametrize("phase", PHASES)
def test_a_signal_in_any_phase_stops_in_seconds_and_resumes_to_the_same_pairs(
    phase: str, send: str, prompts: Path, unbroken: dict[str, str], tmp_path: Path
) -> None:
    run_dir, marker = tmp_path / "run", tmp_path / "interrupted.json"
    args = smoke_train_command(prompts, run_dir, *BOTH_JUDGED, *interrupting(marker, phase, send))
    done = subprocess.run(args, env=environment_with_tests(), capture_output=True, text=True, timeout=600, check=False)
    ended = time.time()
    assert marker.is_file(), f"the run never reached {phase} in iteration 2: {done.stderr[-2000:]}"
    sent = json.loads(marker.read_text())
    assert (sent["phase"], sent["iteration"]) == (phase, 2)
    assert done.returncode == EXIT_CODES[send], done.stderr[-3000:]
    stopped_after = ended - sent["sent_at"]
    print(f"{phase} {send}: the process ended {stopped_after:.1f} s after the signal")  # the figure in the docs
    assert stopped_after < STOP_WITHIN_S, f"stopped {stopped_after:.1f} s after {send}"
    assert "Traceback" not in done.stderr and "resume=true" in done.stderr, done.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    assert not leftovers(run_dir), leftovers(run_dir)

    run_to_end([*args, "resume=true"], environment_with_tests())
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    assert stage_texts(run_dir) == unbroken
