"""Soft preference labels as a config choice: `pairs/label=judge_probability` composes with every experiment and
trainer (both globbed, as in tests/test_experiments.py), a bad labelling is one config problem, and a run with it
trains on labelled pairs. The label numbers are in tests/core/test_pair_labels.py and tests/engine/test_pairs.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import EXPERIMENTS, TRAINERS, compose, config_problems, engine_part

from metareward.core.pair_labels import ConsistencyLabels, HardLabels, JudgeProbabilityLabels
from metareward.run.training import train

LABELS = {"hard": HardLabels, "judge_probability": JudgeProbabilityLabels, "consistency": ConsistencyLabels}


@pytest.mark.parametrize("label", sorted(LABELS))
@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_labelling_composes_with_every_experiment_and_trainer(experiment: str, trainer: str, label: str) -> None:
    cfg = compose(f"+experiment={experiment}", f"trainer={trainer}", f"pairs/label={label}")
    built, found = engine_part(cfg, "pair_labels")
    assert found == [] and type(built) is LABELS[label]


def test_hard_labels_are_the_default() -> None:
    built, found = engine_part(compose("+experiment=meta_reward"), "pair_labels")
    assert type(built) is HardLabels and found == []


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        (
            "pairs.label._target_=metareward.core.pair_labels.NoSuchLabels",
            "pairs.label._target_='metareward.core.pair_labels.NoSuchLabels' does not import",
        ),
        ("pairs.label._target_=collections.OrderedDict", "pairs.label: collections.OrderedDict is not a "),
        ("+pairs.label.floor=0.5", "pairs.label: metareward.core.pair_labels.HardLabels does not accept these"),
        ("pairs/label=consistency pairs.label.granularity=batch", "pairs.label: metareward.core.pair_labels.Consi"),
    ],
)
def test_a_bad_labelling_is_one_config_problem(override: str, problem: str) -> None:
    found = config_problems("+experiment=smoke", *override.split())
    assert len(found) == 1 and found[0].startswith(problem), found


def test_a_run_with_judge_probability_labels_trains_on_labelled_actor_pairs(prompt_file: Path, tmp_path: Path) -> None:
    cfg = compose("+experiment=smoke", f"data.path={prompt_file}", "pairs/label=judge_probability", output_dir=tmp_path)
    train(cfg)
    for iteration in (1, 2):
        folder = tmp_path / "iterations" / f"iter_{iteration:02d}"
        pairs = [json.loads(line) for line in (folder / "pairs.jsonl").read_text().splitlines()]
        actor = [pair for pair in pairs if pair["kind"] == "actor"]
        assert actor and all(0.0 <= pair["label"] <= 1.0 for pair in actor)
        assert all(pair["label"] is None for pair in pairs if pair["kind"] == "judge")  # judge pairs stay hard
        stats = json.loads((folder / "stats.json").read_text())
        assert stats["pairs/actor_soft_labels"] == stats["pairs/actor_count"] == len(actor)
        assert stats["pairs/actor_label_mean"] == pytest.approx(sum(p["label"] for p in actor) / len(actor))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert all(math.isfinite(it["train"]["loss"]) for it in summary["iterations"])
    # The same run with hard labels makes the same iteration-1 data; only the labels reach the loss differently.
    hard = tmp_path / "hard"
    train(compose("+experiment=smoke", f"data.path={prompt_file}", output_dir=hard))
    hard_summary = json.loads((hard / "summary.json").read_text())
    assert hard_summary["iterations"][0]["actor_pairs"] == summary["iterations"][0]["actor_pairs"]
    assert hard_summary["iterations"][0]["train"]["loss"] != summary["iterations"][0]["train"]["loss"]


def test_a_run_with_consistency_labels_rejudges_with_the_previous_judge(prompt_file: Path, tmp_path: Path) -> None:
    cfg = compose("+experiment=smoke", f"data.path={prompt_file}", "pairs/label=consistency", output_dir=tmp_path)
    train(cfg)
    first, second = (tmp_path / "iterations" / f"iter_{t:02d}" for t in (1, 2))
    assert (first / "judge_weights.safetensors").is_file() and not (first / "previous_judgments.jsonl").exists()
    assert (second / "previous_judgments.jsonl").is_file()
    stats = [json.loads((folder / "stats.json").read_text()) for folder in (first, second)]
    assert stats[0]["previous_judge/available"] == 0.0 and stats[0]["pairs/actor_soft_labels"] == 0.0
    assert stats[1]["previous_judge/available"] == 1.0
    actor = [json.loads(line) for line in (second / "pairs.jsonl").read_text().splitlines()]
    actor = [pair for pair in actor if pair["kind"] == "actor"]
    consistency = stats[1]["previous_judge/consistency"]
    assert actor and all(pair["label"] == pytest.approx(consistency) for pair in actor)  # dataset granularity


def test_consistency_labels_with_split_adapters_and_an_untrained_judge_are_refused(prompt_file: Path) -> None:
    base = ("+experiment=smoke", f"data.path={prompt_file}", "pairs/label=consistency")
    assert config_problems(*base) == []  # iteration 2's previous judge is iteration 1's, which the judge pairs moved
    refusal = (
        "pairs/label=consistency compares each iteration's judge with the previous one's, but with "
        "model.adapters.mode=split the judge adapter changes only when the judge trains, so in iterations [3] both "
        "judges would be the same model"
    )
    [problem] = config_problems(*base, "num_iterations=3", "trainer.max_epochs=3")
    assert problem.startswith(refusal)
    for fix in ("model.adapters.mode=shared", "model.finetune=full", "schedule.judge_training_iterations=[1,2]"):
        assert config_problems(*base, "num_iterations=3", "trainer.max_epochs=3", fix) == [], fix
    assert config_problems("+experiment=meta_reward_study_cream", f"data.path={prompt_file}") == []
