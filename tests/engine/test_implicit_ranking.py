"""CREAM's own ranking on the tiny model (`judge/ranking=implicit_reward`): each answer scored by the actor's DPO
implicit reward, checked against plain forward passes; iteration 1 without a warm start by the normalised
likelihood; iteration 2 against the actor saved as iteration 1 began; CREAM's labels compare the two rankings
(checked with scipy's Kendall tau); a resumed iteration reads the scoring stages back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import compose, config_problems, move_role, plain_logprob
from scipy.stats import kendalltau

from metareward.config.build import build_settings
from metareward.engine.iteration import make_iteration_data
from metareward.engine.prompt_pool import load_prompt_pool
from metareward.engine.weights_history import WeightsHistory, weights_file
from metareward.generation.policy import Policy
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.chat import encode_answer, encode_prompt, render_prompt, turn_end_ids
from metareward.model.tiny import build_tiny
from metareward.storage.run_layout import iteration_dir
from metareward.training.collate import PairCollator

CREAM = (
    "+experiment=smoke",
    "schedule.judge_training_iterations=[]",
    "model.adapters.mode=shared",
    "judge/ranking=implicit_reward",
    "pairs.strategy=best_vs_worst",
    "pairs.rho=0.0",
)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def likelihoods(adapters: RoleAdapters, tokenizer, folder: Path) -> dict[tuple[str, int], tuple[float, int]]:
    """Each answer of the iteration in `folder` scored by a plain forward pass with the actor as it is now."""
    prompts = {p["id"]: p for p in lines(folder / "prompts.jsonl")}
    found = {}
    with adapters.role("actor") as model:
        for r in lines(folder / "responses.jsonl"):
            prompt = prompts[r["prompt_id"]]
            ids = encode_prompt(tokenizer, render_prompt(tokenizer, prompt["instruction"], prompt["system"]))
            answer = encode_answer(tokenizer, r["reasoning"] + r["text"], r["finished"], turn_end_ids(tokenizer))
            found[(r["prompt_id"], r["index"])] = (plain_logprob(model, ids, answer), len(answer))
    return found


def best_and_worst(scores: dict[tuple[str, int], float], prompt_id: str) -> tuple[int, int]:
    mine = {index: value for (p, index), value in scores.items() if p == prompt_id}
    return max(mine, key=mine.__getitem__), min(mine, key=mine.__getitem__)


def test_the_answers_are_ranked_by_the_actors_implicit_reward(prompt_file: Path, tmp_path: Path) -> None:
    overrides = (*CREAM, f"data.path={prompt_file}", "pairs/label=consistency", "pairs.label.granularity=prompt")
    settings = build_settings(compose(*overrides)).engine
    pool = load_prompt_pool(str(prompt_file))
    model, tokenizer = build_tiny()
    adapters = RoleAdapters(model, AdapterSpec(r=4, alpha=8))
    move_role(adapters, "actor", seed=1, scale=0.5)
    policy, history, run = (
        Policy(adapters, tokenizer, settings.max_prompt_tokens, False),
        WeightsHistory(adapters),
        tmp_path / "run",
    )

    # Iteration 1, no warm start: no model before this one, so each answer scores its log-likelihood per token.
    first = make_iteration_data(policy, settings, pool, 1, run, history=history)
    one = iteration_dir(run, 1)
    assert (one / weights_file("actor")).is_file() and not (one / weights_file("judge")).is_file()
    assert not (one / "previous_likelihoods.jsonl").exists() and not (one / "previous_judgments.jsonl").exists()
    normalised = {key: logp / tokens for key, (logp, tokens) in likelihoods(adapters, tokenizer, one).items()}
    scored = {(r["prompt_id"], r["index"]): r["logp"] for r in lines(one / "likelihoods.jsonl")}
    plain = likelihoods(adapters, tokenizer, one)
    assert scored == {key: pytest.approx(plain[key][0], abs=1e-4) for key in plain}
    actor = [p for p in first.pairs if p.kind == "actor"]
    assert actor and all(p.label is None for p in actor)  # nothing to compare with: hard pairs
    for pair in actor:
        assert (pair.chosen_index, pair.rejected_index) == best_and_worst(normalised, pair.prompt_id)
    assert first.stats["ranking/against_previous_model"] == 0.0 and first.stats["previous_ranking/available"] == 0.0

    # Iteration 2: DPO moved the actor; the reward is log pi_2 - log pi_1, pi_1 the actor saved as iteration 1 began.
    before = adapters.role_tensors("actor")
    move_role(adapters, "actor", seed=2, scale=0.5)
    moved = adapters.role_tensors("actor")
    second = make_iteration_data(policy, settings, pool, 2, run, history=history)
    two = iteration_dir(run, 2)
    assert all(torch.equal(moved[n], t) for n, t in adapters.role_tensors("actor").items())  # its own weights back
    now = likelihoods(adapters, tokenizer, two)
    with adapters.role_tensors_lent("actor", before):
        then = likelihoods(adapters, tokenizer, two)
    earlier = {(r["prompt_id"], r["index"]): r["logp"] for r in lines(two / "previous_likelihoods.jsonl")}
    assert earlier == {key: pytest.approx(then[key][0], abs=1e-4) for key in then}
    rewards = {key: now[key][0] - then[key][0] for key in now}
    previous = {key: logp / tokens for key, (logp, tokens) in then.items()}  # pi_1 had no model before it
    actor = [p for p in second.pairs if p.kind == "actor"]
    assert actor
    for pair in actor:
        assert (pair.chosen_index, pair.rejected_index) == best_and_worst(rewards, pair.prompt_id)
        keys = sorted(key for key in rewards if key[0] == pair.prompt_id)
        tau = kendalltau([previous[k] for k in keys], [rewards[k] for k in keys]).statistic
        assert pair.label == pytest.approx((tau + 1) / 2, abs=1e-6)
    assert second.stats["ranking/against_previous_model"] == 1.0
    assert second.stats["previous_ranking/available"] == 1.0
    assert second.stats["previous_ranking/consistency"] == pytest.approx(np.mean([p.label for p in actor]))

    # Resumed, the iteration reads its scoring stages back and makes the same pairs.
    again = make_iteration_data(policy, settings, pool, 2, run, reuse=True, history=history)
    assert again.pairs == second.pairs


def test_the_reward_is_what_dpo_reads_from_the_pair(prompt_file: Path, tmp_path: Path) -> None:
    # The answers are scored as the DPO collator encodes a pair's sides, so the ranking's log-likelihoods are the
    # policy log-probs DPO computes for the pair it makes.
    settings = build_settings(compose(*CREAM, f"data.path={prompt_file}")).engine
    model, tokenizer = build_tiny()
    adapters = RoleAdapters(model, AdapterSpec(r=4, alpha=8))
    policy = Policy(adapters, tokenizer, settings.max_prompt_tokens, False)
    made = make_iteration_data(
        policy, settings, load_prompt_pool(str(prompt_file)), 1, tmp_path, history=WeightsHistory(adapters)
    )
    scored = {(r["prompt_id"], r["index"]): r for r in lines(iteration_dir(tmp_path, 1) / "likelihoods.jsonl")}
    collator = PairCollator(tokenizer, 4096, 4096)
    actor = [p for p in made.pairs if p.kind == "actor"]
    assert actor
    for pair in actor:
        _, chosen, rejected = collator.encode(pair)
        assert scored[(pair.prompt_id, pair.chosen_index)]["tokens"] == len(chosen)
        assert scored[(pair.prompt_id, pair.rejected_index)]["tokens"] == len(rejected)


def test_a_ranking_without_the_judge_refuses_labels_from_the_judges_scores(prompt_file: Path) -> None:
    cfg = compose(*CREAM, f"data.path={prompt_file}", "pairs/label=judge_probability")
    with pytest.raises(Exception, match="judge/ranking \\(ImplicitRewardRanking\\) chooses pairs without the judge"):
        build_settings(cfg)


def test_with_split_adapters_the_implicit_reward_still_compares_two_models(prompt_file: Path) -> None:
    # Actor DPO moves the actor's adapter every iteration, so unlike the previous judge's labels (refused with split
    # adapters and an untrained judge) the two rankings come from two models.
    split = (*CREAM[:2], "judge/ranking=implicit_reward", "pairs/label=consistency", "model.adapters.mode=split")
    assert config_problems(*split, f"data.path={prompt_file}", "num_iterations=3") == []
    judged = (*CREAM[:2], "pairs/label=consistency", "model.adapters.mode=split", "num_iterations=3")
    assert any("both judges would be the same model" in p for p in config_problems(*judged, f"data.path={prompt_file}"))
