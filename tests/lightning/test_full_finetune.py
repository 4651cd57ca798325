"""Full fine-tuning (`model.finetune=full`) of the embedded SmolLM2-135M-Instruct on CPU, two iterations: DPO lowers
the loss, the weights leave M0, iteration 2 is made by M1, the evaluation answers beside M0, and a run killed while
it trains resumes to the pairs of an unbroken run."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import kill_when, run_to_end, smoke_train_command, stage_texts, write_prompts
from transformers import AutoModelForCausalLM, AutoTokenizer

from metareward.model.embedded import ensure_embedded_checkpoint
from metareward.storage.artifacts import read_records
from metareward.storage.records import PairRecord
from metareward.training.collate import PairCollator
from metareward.training.reference import reference_logprobs

FULL = (
    "model=smollm2_135m",
    "model.finetune=full",
    "dpo.epochs_per_iteration=2",  # each iteration's pairs seen twice: the second pass must have a lower loss
    "evaluation.num_prompts=4",
    "evaluation.judge_quality.num_pairs=4",
)


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    questions = ["Name three fruits.", "Explain gravity simply.", "Write a haiku about rain.", "What is 7 times 8?"]
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    write_prompts(path, questions)
    return path


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory, prompts: Path) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("full")
    run_to_end(smoke_train_command(prompts, root / "run", *FULL))
    yield root / "run"
    shutil.rmtree(root, ignore_errors=True)  # about 2.5 GB of whole-model checkpoints, needed by this module only


def step_losses(run_dir: Path) -> dict[int, list[float]]:
    """Each epoch's DPO step losses, from the CSV logger (one epoch per iteration)."""
    (metrics,) = run_dir.glob("csv/version_*/metrics.csv")
    losses: dict[int, list[float]] = {}
    for row in csv.DictReader(metrics.open()):
        if row.get("train/loss"):
            losses.setdefault(int(row["epoch"]), []).append(float(row["train/loss"]))
    return losses


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.slow
def test_two_iterations_train_every_weight_and_the_second_is_made_by_m1(unbroken: Path) -> None:
    summary = json.loads((unbroken / "summary.json").read_text())
    assert summary["status"] == "finished" and [it["iteration"] for it in summary["iterations"]] == [1, 2]
    for losses in step_losses(unbroken).values():  # two passes over the same pairs: the second scores lower
        half = len(losses) // 2
        assert half >= 1 and mean(losses[half:]) < mean(losses[:half]), losses
    distances = [it["weights"]["distance_from_seed"] for it in summary["iterations"]]
    assert 0 < distances[0] < distances[1]
    for it in summary["iterations"]:  # the actor against M0, the seed role: a frozen copy, not adapters off
        assert 0 <= it["eval"]["win_rate"] <= 100 and "judge_accuracy" in it["eval"]

    seed_dir = ensure_embedded_checkpoint()
    tokenizer = AutoTokenizer.from_pretrained(seed_dir)
    m0 = AutoModelForCausalLM.from_pretrained(seed_dir, dtype=torch.float32)
    m1 = AutoModelForCausalLM.from_pretrained(unbroken / "checkpoints" / "iter_01" / "policy", dtype=torch.float32)
    m2 = AutoModelForCausalLM.from_pretrained(unbroken / "checkpoints" / "iter_02" / "policy", dtype=torch.float32)
    changed = [n for n, p in m2.state_dict().items() if not torch.equal(p, m0.state_dict()[n])]
    assert "model.layers.0.mlp.down_proj.weight" in changed and "model.embed_tokens.weight" in changed
    # Iteration 2's reference log-probs are M1's (the model that made its data), not M0's.
    pairs = read_records(unbroken / "iterations" / "iter_02" / "train_pairs.jsonl", PairRecord)[:2]
    collator = PairCollator(tokenizer, max_prompt_tokens=512, max_completion_tokens=256)  # conf/dpo/default.yaml
    by_m1 = reference_logprobs(m1, collator, pairs, progress=False)
    by_m0 = reference_logprobs(m0, collator, pairs, progress=False)
    for stored, one, zero in zip(pairs, by_m1, by_m0, strict=True):
        assert stored.ref_chosen_logp == pytest.approx(one.ref_chosen_logp, abs=1e-2)
        assert abs(stored.ref_chosen_logp - zero.ref_chosen_logp) > 1e-2


@pytest.mark.slow
def test_a_full_fine_tuning_run_killed_while_it_trains_resumes_to_the_same_pairs(
    prompts: Path, tmp_path: Path, unbroken: Path
) -> None:
    broken = tmp_path / "broken"
    kill_when(smoke_train_command(prompts, broken, *FULL), broken / "iterations" / "iter_01" / "train_pairs.jsonl")
    assert not (broken / "checkpoints" / "last.ckpt").exists(), "the kill came after iteration 1 was trained"
    run_to_end(smoke_train_command(prompts, broken, *FULL, "resume=true"))
    assert stage_texts(broken) == stage_texts(unbroken)
    saved = "checkpoints/iter_02/policy/model.safetensors"
    assert (broken / saved).read_bytes() == (unbroken / saved).read_bytes()
