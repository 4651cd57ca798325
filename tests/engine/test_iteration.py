"""One data-making iteration on the tiny model, through the real generation, adapters and artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import compose
from metareward.config import build_settings
from metareward.engine.iteration import iteration_dir, make_iteration_data
from metareward.engine.policy import Policy
from metareward.engine.prompt_pool import load_prompt_pool
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.tiny import build_tiny


def run_iteration(prompt_file: Path, run_dir: Path, *overrides: str):
    settings = build_settings(compose("+experiment=smoke", f"data.path={prompt_file}", *overrides)).engine
    model, tokenizer = build_tiny()
    policy = Policy(RoleAdapters(model, AdapterSpec(r=4, alpha=8)), tokenizer, progress=False)
    pool = load_prompt_pool(str(prompt_file))
    return make_iteration_data(policy, settings, pool, 1, run_dir), settings


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_iteration_writes_every_stage_and_counts_add_up(prompt_file: Path, tmp_path: Path) -> None:
    data, settings = run_iteration(prompt_file, tmp_path)
    out = iteration_dir(tmp_path, 1)
    prompts, responses = lines(out / "prompts.jsonl"), lines(out / "responses.jsonl")
    judgments, verdicts = lines(out / "judgments.jsonl"), lines(out / "meta_judgments.jsonl")
    assert len(prompts) == settings.prompts_per_iteration
    dropped = sum(v for k, v in data.stats.items() if k.startswith("actor/dropped/"))
    assert len(responses) + dropped == settings.prompts_per_iteration * settings.num_responses
    assert len(judgments) == len(responses) * settings.num_judgments
    assert all(j["score"] is not None and 0 <= j["score"] <= 5 for j in judgments)  # probability mode always reads
    n = settings.num_judgments
    assert len(verdicts) == (data.stats["data/prompts"] - data.stats.get("pairs/judge_dropped/too_few_judgments", 0)) * n * (n - 1)
    pairs = lines(out / "pairs.jsonl")
    assert len(pairs) == data.stats["pairs/actor_count"] + data.stats["pairs/judge_count"] == len(data.pairs)
    assert data.stats["pairs/actor_count"] + sum(
        v for k, v in data.stats.items() if k.startswith("pairs/actor_dropped/")
    ) == settings.prompts_per_iteration
    assert json.loads((out / "stats.json").read_text()) == pytest.approx(data.stats)


def test_same_seed_same_data_and_another_seed_other_data(prompt_file: Path, tmp_path: Path) -> None:
    run_iteration(prompt_file, tmp_path / "a")
    run_iteration(prompt_file, tmp_path / "b")
    run_iteration(prompt_file, tmp_path / "c", "seed=1")
    read = lambda run, name: (iteration_dir(tmp_path / run, 1) / name).read_text()  # noqa: E731
    for name in ("responses.jsonl", "judgments.jsonl", "meta_judgments.jsonl", "pairs.jsonl"):
        assert read("a", name) == read("b", name)
    assert read("a", "responses.jsonl") != read("c", "responses.jsonl")


def test_self_reward_makes_no_judge_data(prompt_file: Path, tmp_path: Path) -> None:
    data, _ = run_iteration(prompt_file, tmp_path, "schedule.judge_training_iterations=[]", "pairs.strategy=best_vs_worst")
    assert not (iteration_dir(tmp_path, 1) / "meta_judgments.jsonl").exists()
    assert data.stats["pairs/judge_count"] == 0 and all(p.kind == "actor" for p in data.pairs)
