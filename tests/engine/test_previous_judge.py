"""The previous iteration's judge (CREAM) on the tiny model: iteration 2 judges its responses a second time with the
judge weights saved as iteration 1 began, exactly as a judge holding those weights would, then gets its own judge
back; each pair's label is the two rankings' agreement, checked against scipy's Kendall tau."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import compose, move_role
from scipy.stats import kendalltau

from metareward.config.build import build_settings
from metareward.engine.iteration import make_iteration_data
from metareward.engine.pairs import mean_scores
from metareward.engine.prompt_pool import load_prompt_pool
from metareward.engine.weights_history import WeightsHistory, weights_file
from metareward.generation.policy import Policy
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.tiny import build_tiny
from metareward.storage.records import JudgmentRecord
from metareward.storage.run_layout import iteration_dir


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def tiny_policy(settings) -> tuple[Policy, RoleAdapters]:
    model, tokenizer = build_tiny()
    adapters = RoleAdapters(model, AdapterSpec(r=4, alpha=8))
    return Policy(adapters, tokenizer, settings.max_prompt_tokens, False), adapters


def test_iteration_two_rejudges_with_iteration_ones_judge(prompt_file: Path, tmp_path: Path) -> None:
    # No judge training: the test moves the judge itself between the iterations (one shared adapter, for the config
    # check: with split adapters and an untrained judge the two judges would be one model, which is refused).
    overrides = ("+experiment=smoke", f"data.path={prompt_file}", "schedule.judge_training_iterations=[]")
    overrides += ("model.adapters.mode=shared",)
    settings = build_settings(compose(*overrides, "pairs/label=consistency", "pairs.label.granularity=prompt")).engine
    pool = load_prompt_pool(str(prompt_file))
    policy, adapters = tiny_policy(settings)
    history = WeightsHistory(adapters)
    first = make_iteration_data(policy, settings, pool, 1, tmp_path / "run", history=history)
    assert first.stats["previous_judge/available"] == 0.0 and all(p.label is None for p in first.pairs)
    assert (iteration_dir(tmp_path / "run", 1) / weights_file("judge")).is_file()

    move_role(adapters, "judge", seed=1)
    moved = adapters.role_tensors("judge")
    second = make_iteration_data(policy, settings, pool, 2, tmp_path / "run", history=history)
    out = iteration_dir(tmp_path / "run", 2)
    assert all(torch.equal(moved[n], t) for n, t in adapters.role_tensors("judge").items())  # its own judge is back

    # A second model whose judge never moved (iteration 1's weights) makes iteration 2's judgments: the same texts
    # and scores as the previous-judge pass of the first run, and not the moved judge's.
    reference_settings = build_settings(compose(*overrides)).engine
    reference, _ = tiny_policy(reference_settings)
    make_iteration_data(reference, reference_settings, pool, 2, tmp_path / "reference")
    unmoved = lines(iteration_dir(tmp_path / "reference", 2) / "judgments.jsonl")
    assert lines(out / "previous_judgments.jsonl") == unmoved
    assert lines(out / "judgments.jsonl") != unmoved

    current = mean_scores([JudgmentRecord(**j) for j in lines(out / "judgments.jsonl")])
    previous = mean_scores([JudgmentRecord(**j) for j in unmoved])
    actor = [p for p in second.pairs if p.kind == "actor"]
    assert actor
    for pair in actor:
        keys = sorted(key for key in current if key[0] == pair.prompt_id and key in previous)
        tau = kendalltau([previous[k] for k in keys], [current[k] for k in keys]).statistic
        assert pair.label == pytest.approx((tau + 1) / 2)
    assert second.stats["previous_judge/available"] == 1.0
    assert second.stats["previous_judge/judgments"] == len(unmoved)


def test_the_history_refuses_weights_of_another_adapter_shape(tmp_path: Path) -> None:
    model, _ = build_tiny()
    small = WeightsHistory(RoleAdapters(model, AdapterSpec(r=4, alpha=8)))
    small.save(tmp_path, "judge")
    other, _ = build_tiny()
    large = WeightsHistory(RoleAdapters(other, AdapterSpec(r=8, alpha=16)))
    with pytest.raises(ValueError, match="do not match it"), large.lent(tmp_path, "judge"):
        pass


def test_a_labelling_that_reads_the_previous_judge_needs_the_history(prompt_file: Path, tmp_path: Path) -> None:
    settings = build_settings(
        compose("+experiment=smoke", f"data.path={prompt_file}", "pairs/label=consistency")
    ).engine
    policy, _ = tiny_policy(settings)
    with pytest.raises(ValueError, match="pass the weights history"):
        make_iteration_data(policy, settings, load_prompt_pool(str(prompt_file)), 1, tmp_path)


def test_after_a_warm_start_iteration_one_compares_with_the_judge_before_it(prompt_file: Path, tmp_path: Path) -> None:
    overrides = ("+experiment=smoke", f"data.path={prompt_file}", "schedule.judge_training_iterations=[]")
    overrides += ("model.adapters.mode=shared", "pairs/label=consistency", "pairs.label.granularity=prompt")
    settings = build_settings(compose(*overrides)).engine
    pool = load_prompt_pool(str(prompt_file))
    policy, adapters = tiny_policy(settings)
    history = WeightsHistory(adapters)
    history.save_before_warm_start(tmp_path / "run", ["judge"])
    move_role(adapters, "judge", seed=1)  # what the warm start does to it
    history.save_before_warm_start(tmp_path / "run", ["judge"])  # a resumed run keeps the first save
    warm = adapters.role_tensors("judge")
    first = make_iteration_data(policy, settings, pool, 1, tmp_path / "run", history=history)
    out = iteration_dir(tmp_path / "run", 1)
    assert first.stats["previous_judge/available"] == 1.0
    assert len(lines(out / "previous_judgments.jsonl")) == len(lines(out / "judgments.jsonl"))
    assert lines(out / "previous_judgments.jsonl") != lines(out / "judgments.jsonl")  # two different judges
    assert any(p.label is not None for p in first.pairs if p.kind == "actor")
    assert all(torch.equal(warm[n], t) for n, t in adapters.role_tensors("judge").items())  # its own judge is back
