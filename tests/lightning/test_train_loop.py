"""The whole loop on the tiny model: data each iteration, DPO on the adapters, summary.json, the CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch
from helpers import REPO_ROOT, compose

from metareward.config.build import build_settings
from metareward.evaluation.runner import read_judge_scores
from metareward.export.checkpoint import load_policy, open_run
from metareward.model.precision import resolve_dtype
from metareward.model.roles import SEED_JUDGE_ROLE
from metareward.model.tiny import build_tiny
from metareward.run.training import train


def test_two_iterations_train_the_adapters_and_leave_the_base_alone(prompt_file: Path, tmp_path: Path) -> None:
    cfg = compose("+experiment=smoke", f"data.path={prompt_file}", output_dir=tmp_path)
    result = train(cfg)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["experiment"] == "smoke"
    assert [it["iteration"] for it in summary["iterations"]] == [1, 2]
    for it in summary["iterations"]:
        assert it["actor_pairs"] > 0
        assert math.isfinite(it["train"]["loss"]) and 0 <= it["train"]["reward_accuracy"] <= 1
        assert {"generate", "judge", "reference", "train"} <= set(it["phases"])
        assert it["weights"]["base_unchanged"] is True and it["weights"]["adapter_norms"]["actor"] > 0
    assert "meta_judge" in summary["iterations"][0]["phases"]
    assert "meta_judge" not in summary["iterations"][1]["phases"]  # judge training only in iteration 1

    fresh, _ = build_tiny()
    fresh.to(resolve_dtype("auto").torch)  # the run loaded it in model.dtype=auto
    trained = dict(result.module.model.named_parameters())
    for name, parameter in fresh.named_parameters():
        peft_name = (
            "base_model.model." + name.replace(".weight", ".base_layer.weight")
            if "_proj" in name and "self_attn" in name
            else "base_model.model." + name
        )
        assert torch.equal(trained[peft_name], parameter), name
    actor_b = [p for n, p in trained.items() if "lora_B.actor" in n]
    assert actor_b and any(p.abs().sum() > 0 for p in actor_b)  # LoRA B starts at zero; training moved it
    assert (tmp_path / "checkpoints" / "iter_02" / "actor" / "adapter_model.safetensors").is_file()


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "train.py"), *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_run_leaves_an_offline_wandb_run(prompt_file: Path, tmp_path: Path) -> None:
    run = run_cli(
        "+experiment=smoke",
        "logger=wandb",
        "num_iterations=1",
        f"data.path={prompt_file}",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert list((tmp_path / "wandb").glob("offline-run-*")), "no offline wandb run directory"
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "finished"


def test_cli_reports_a_bad_config_in_plain_sentences(tmp_path: Path) -> None:
    run = run_cli(
        "+experiment=smoke", "pairs.rho=2", "actor.num_responses=1", f"hydra.run.dir={tmp_path}", cwd=tmp_path
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "pairs.rho=2.0 must be in [0, 0.5]" in run.stderr and "actor.num_responses=1" in run.stderr


def test_cli_reports_a_missing_prompt_file(tmp_path: Path) -> None:
    run = run_cli("+experiment=smoke", f"data.path={tmp_path}/none.jsonl", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr and "does not exist" in run.stderr


def test_warm_start_runs_as_iteration_zero_and_its_model_is_m0(prompt_file: Path, tmp_path: Path) -> None:
    cfg = compose(
        "+experiment=smoke",
        f"data.path={prompt_file}",
        "num_iterations=1",
        "model.dtype=float32",  # the seed judge's scores are compared below at 1e-4
        "warm_start=eft",
        "warm_start.max_steps=2",
        "warm_start.lr=1e-2",  # moves the tiny model's adapters far enough to tell M0 from the base model
        # The tiny model's byte-level tokenizer needs room: examples over the limits are dropped, never cut.
        "warm_start.max_prompt_tokens=4096",
        "warm_start.max_completion_tokens=4096",
        "callbacks.judge_quality=null",
        "callbacks.dashboard=null",
        output_dir=tmp_path,
    )
    train(cfg)
    summary = json.loads((tmp_path / "summary.json").read_text())
    warm = summary["warm_start"]
    assert warm["data"]["ift"]["examples"] == 42 and warm["data"]["eft"]["examples"] == 43
    assert warm["adapters"]["actor"]["steps"] == 2 and warm["adapters"]["judge"]["steps"] == 2
    assert summary["iterations"][0]["weights"]["adapter_norms"]["judge"] > 0  # the warm start trained it

    # M0 is the warm-started model: saved as iteration 0, and the frozen seed judge of the evaluation is its judge.
    policy, adapters = load_policy(open_run(tmp_path), 0, max_prompt_tokens=4096, progress=False)
    exported = adapters.role_tensors("actor")  # what `export --iteration 0` answers with: the warm-started actor
    adapters.load(tmp_path / "checkpoints" / "iter_00")  # both adapters (the export loads the actor's)
    assert all(torch.equal(tensor, adapters.role_tensors("actor")[name]) for name, tensor in exported.items())
    assert any(tensor.abs().sum() > 0 for name, tensor in exported.items() if "lora_B" in name)
    rows = json.loads((tmp_path / "eval" / "iter_01" / "win_rate.json").read_text())["annotations"]
    items = [(row["instruction"], row["answer"]) for row in rows]
    judge_prompt, evaluation = build_settings(cfg).engine.judge_prompt, cfg.evaluation
    read = partial(read_judge_scores, policy, items, judge_prompt, evaluation.batch_size, 4096)
    np.testing.assert_allclose([row["seed_judge_score"] for row in rows], read("judge"), atol=1e-4)
    assert np.abs(read(SEED_JUDGE_ROLE) - read("judge")).max() > 1e-3  # the base model (adapters off) differs


def test_the_global_batch_sets_the_trainers_gradient_accumulation(prompt_file: Path, tmp_path: Path) -> None:
    overrides = ("+experiment=smoke", f"data.path={prompt_file}", "num_iterations=1", "trainer.max_epochs=1")
    result = train(compose(*overrides, "dpo.batch_size=1", "dpo.global_batch_size=2", output_dir=tmp_path))
    assert result.module.trainer.accumulate_grad_batches == 2  # 2 pairs per step = 1 pair x 1 device x 2 batches


# One warm-start step, no evaluation callbacks: a warm start is all these runs need of the rest of the loop.
QUICK_WARM_START = (
    "warm_start=eft",
    "warm_start.max_steps=1",
    "warm_start.lr=1e-2",
    "warm_start.max_prompt_tokens=4096",
    "warm_start.max_completion_tokens=4096",
    "callbacks.win_rate=null",
    "callbacks.judge_quality=null",
    "callbacks.dashboard=null",
)


def test_creams_first_iteration_after_a_warm_start_compares_with_the_judge_before_it(
    prompt_file: Path, tmp_path: Path
) -> None:
    cfg = compose(
        "+experiment=smoke",
        f"data.path={prompt_file}",
        "num_iterations=1",
        "model.adapters.mode=shared",
        "pairs/label=consistency",
        *QUICK_WARM_START,
        output_dir=tmp_path,
    )
    train(cfg)
    assert (tmp_path / "iterations" / "iter_00" / "judge_weights.safetensors").is_file()
    stats = json.loads((tmp_path / "summary.json").read_text())["iterations"][0]["stats"]
    assert stats["previous_judge/available"] == 1.0 and stats["previous_judge/judgments"] > 0


def test_creams_implicit_reward_after_a_warm_start_ranks_against_the_model_before_it(
    prompt_file: Path, tmp_path: Path
) -> None:
    # CREAM as its authors run it: iteration 1 ranks by log pi_1 - log pi_0, pi_0 the actor before the warm start
    # (saved as iter_00's actor weights); its labels compare with pi_0's own normalised-likelihood ranking.
    cfg = compose(
        "+experiment=smoke",
        f"data.path={prompt_file}",
        "num_iterations=2",
        "schedule.judge_training_iterations=[]",
        "judge/ranking=implicit_reward",
        "pairs/label=consistency",
        *QUICK_WARM_START,
        output_dir=tmp_path,
    )
    train(cfg)
    iterations = tmp_path / "iterations"
    assert (iterations / "iter_00" / "actor_weights.safetensors").is_file()
    assert not (iterations / "iter_00" / "judge_weights.safetensors").exists()  # no judge ranks: none kept
    for t in (1, 2):
        assert (iterations / f"iter_0{t}" / "previous_likelihoods.jsonl").is_file()
    assert (iterations / "iter_02" / "earlier_likelihoods.jsonl").is_file()  # pi_0, for pi_1's ranking
    summary = json.loads((tmp_path / "summary.json").read_text())["iterations"]
    for found in summary:
        stats = found["stats"]
        assert stats["ranking/against_previous_model"] == 1.0 and stats["previous_ranking/available"] == 1.0
        assert 0.0 <= stats["previous_ranking/consistency"] <= 1.0
