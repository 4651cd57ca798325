"""Two processes (DDP over gloo on CPU) make and train on exactly the pairs one process makes.

One iteration: its pairs come from M_0 in both runs. Later iterations start from models trained data-parallel
(gradients averaged over ranks), which follow another optimisation path than one process, as any DDP run does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from helpers import smoke_train_command


def run(prompt_file: Path, run_dir: Path, *extra: str, win_rate: bool = False) -> dict:
    """One iteration of the smoke run, without the evaluations (but the win rate's, when asked)."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    evaluations = ("callbacks.judge_quality=null", "callbacks.dashboard=null")
    evaluations += () if win_rate else ("callbacks.win_rate=null",)
    args = smoke_train_command(prompt_file, run_dir, *evaluations, "num_iterations=1", *extra)
    done = subprocess.run(args, check=False, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((run_dir / "summary.json").read_text())


def pair_rows(run_dir: Path, iteration: int) -> list[dict]:
    path = run_dir / "iterations" / f"iter_{iteration:02d}" / "train_pairs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_two_ranks_train_on_the_pairs_of_a_one_process_run(prompt_file: Path, tmp_path: Path, finetune: str) -> None:
    # float32: bfloat16 rounding depends on what shares a batch, and a rank batches other requests together, so a
    # sampled token may differ from the one-process run's (docs/scaling.md, "How the data engine shards and gathers")
    what = (f"model.finetune={finetune}", "model.dtype=float32")
    one = run(prompt_file, tmp_path / "one", *what, win_rate=True)
    ddp = ("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    two = run(prompt_file, tmp_path / "two", *what, *ddp, win_rate=True)
    # The evaluation is shared out too: each rank answers its share of the held-out prompts. M0's baseline answers
    # (before any training) equal the one-process run's.
    baseline = "eval/baseline_answers.jsonl"
    assert (tmp_path / "two" / baseline).read_text() == (tmp_path / "one" / baseline).read_text()
    assert two["iterations"][0]["eval"]["eval_prompts"] == one["iterations"][0]["eval"]["eval_prompts"] > 1
    for single, double in zip(one["iterations"], two["iterations"]):
        assert double["stats"]["data/world_size"] == 2 and single["stats"]["data/world_size"] == 1
        # Every rank checked its digest against the others before training; it equals the one-process digest.
        assert double["pairs_digest"] == single["pairs_digest"]
        assert double["actor_pairs"] == single["actor_pairs"] and double["judge_pairs"] == single["judge_pairs"]
    assert two["iterations"][0]["train"]["loss"] is not None
    for iteration in (1,):
        for a, b in zip(pair_rows(tmp_path / "one", iteration), pair_rows(tmp_path / "two", iteration), strict=True):
            assert {k: a[k] for k in ("kind", "prompt", "chosen", "rejected")} == {
                k: b[k] for k in ("kind", "prompt", "chosen", "rejected")
            }
            # Scores and log-probs were computed in other batches: equal up to float rounding.
            for key in ("chosen_score", "rejected_score", "ref_chosen_logp", "ref_rejected_logp"):
                assert a[key] == pytest.approx(b[key], abs=1e-4)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_on_loopback_train_on_the_pairs_of_a_one_process_run(prompt_file: Path, tmp_path: Path) -> None:
    """trainer.num_nodes=2 as a cluster starts it: one train.py per node (here two processes on loopback), told its
    NODE_RANK and the rank-0 address by the environment (Lightning's own cluster environment), one device each."""
    what = ("model.dtype=float32",)  # as above: the same batches in both runs
    one = run(prompt_file, tmp_path / "one", *what)
    nodes = ("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=2")
    args = smoke_train_command(
        prompt_file,
        tmp_path / "two",
        "callbacks.win_rate=null",
        "callbacks.judge_quality=null",
        "callbacks.dashboard=null",
        "num_iterations=1",
        *what,
        *nodes,
    )
    cluster = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WANDB_MODE": "offline"}
    started = [
        subprocess.Popen(
            args, env={**os.environ, **cluster, "NODE_RANK": str(rank)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for rank in (1, 0)
    ]
    for process in started:
        _, stderr = process.communicate(timeout=900)
        assert process.returncode == 0, stderr.decode()[-3000:]
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    for single, double in zip(one["iterations"], two["iterations"], strict=True):
        assert double["stats"]["data/world_size"] == 2
        assert double["pairs_digest"] == single["pairs_digest"]
    rows = zip(pair_rows(tmp_path / "one", 1), pair_rows(tmp_path / "two", 1), strict=True)
    assert all(a["chosen"] == b["chosen"] and a["rejected"] == b["rejected"] for a, b in rows)


@pytest.mark.slow
def test_two_ranks_end_the_iteration_with_the_same_chosen_pass(prompt_file: Path, tmp_path: Path) -> None:
    # dpo.choose_pass_by under DDP: every rank evaluates after each pass and decides on rank 0's figure.
    choice = ("dpo.epochs_per_iteration=2", "dpo.choose_pass_by=win_rate", "dpo.lr=5e-2", "model.dtype=float32")
    ddp = ("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    summary = run(prompt_file, tmp_path, *choice, *ddp, win_rate=True)
    record = json.loads((tmp_path / "eval" / "iter_01" / "passes.json").read_text())
    assert len(record["scores"]) == 2 and record["chosen_pass"] == record["scores"].index(max(record["scores"])) + 1
    figures = summary["iterations"][0]["eval"]
    assert figures["chosen_pass"] == record["chosen_pass"]
    assert figures["win_rate"] == pytest.approx(max(record["scores"]), abs=1e-9)
