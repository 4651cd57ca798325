"""One data-making iteration on the tiny model, through the real generation, adapters and artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import compose

from metareward.config.build import build_settings
from metareward.engine.iteration import make_iteration_data
from metareward.engine.prompt_pool import load_prompt_pool
from metareward.generation.policy import Policy
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.tiny import build_tiny
from metareward.storage.run_layout import iteration_dir
from metareward.training.collate import PairCollator


def run_iteration(prompt_file: Path, run_dir: Path, *overrides: str):
    settings = build_settings(compose("+experiment=smoke", f"data.path={prompt_file}", *overrides)).engine
    model, tokenizer = build_tiny()
    policy = Policy(RoleAdapters(model, AdapterSpec(r=4, alpha=8)), tokenizer, settings.max_prompt_tokens, False)
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
    assert len(verdicts) == (
        data.stats["data/prompts"] - data.stats.get("pairs/judge_dropped/too_few_judgments", 0)
    ) * n * (n - 1)
    pairs = lines(out / "pairs.jsonl")
    assert len(pairs) == data.stats["pairs/actor_count"] + data.stats["pairs/judge_count"] == len(data.pairs)
    assert (
        data.stats["pairs/actor_count"] + sum(v for k, v in data.stats.items() if k.startswith("pairs/actor_dropped/"))
        == settings.prompts_per_iteration
    )
    assert json.loads((out / "stats.json").read_text()) == pytest.approx(data.stats)


def test_same_seed_same_data_and_another_seed_other_data(prompt_file: Path, tmp_path: Path) -> None:
    run_iteration(prompt_file, tmp_path / "a")
    run_iteration(prompt_file, tmp_path / "b")
    run_iteration(prompt_file, tmp_path / "c", "seed=1")
    read = lambda run, name: (iteration_dir(tmp_path / run, 1) / name).read_text()
    for name in ("responses.jsonl", "judgments.jsonl", "meta_judgments.jsonl", "pairs.jsonl"):
        assert read("a", name) == read("b", name)
    assert read("a", "responses.jsonl") != read("c", "responses.jsonl")


def test_self_reward_makes_no_judge_data(prompt_file: Path, tmp_path: Path) -> None:
    data, _ = run_iteration(
        prompt_file, tmp_path, "schedule.judge_training_iterations=[]", "pairs.strategy=best_vs_worst"
    )
    assert not (iteration_dir(tmp_path, 1) / "meta_judgments.jsonl").exists()
    assert data.stats["pairs/judge_count"] == 0 and all(p.kind == "actor" for p in data.pairs)


def test_cut_off_answers_never_become_pair_sides(prompt_file: Path, tmp_path: Path) -> None:
    data, settings = run_iteration(prompt_file, tmp_path, "pairs.unfinished=drop")
    responses = lines(iteration_dir(tmp_path, 1) / "responses.jsonl")
    unfinished = sum(not r["finished"] for r in responses)
    assert unfinished > 0  # the tiny random model rarely writes its end token
    assert data.stats["actor/unfinished_excluded"] == unfinished
    assert all(p.chosen_finished and p.rejected_finished for p in data.pairs)
    dropped = sum(v for k, v in data.stats.items() if k.startswith("pairs/actor_dropped/"))
    assert data.stats["pairs/actor_count"] + dropped == settings.prompts_per_iteration
    kept, _ = run_iteration(prompt_file, tmp_path / "keep", "pairs.unfinished=keep")
    assert any(not (p.chosen_finished and p.rejected_finished) for p in kept.pairs if p.kind == "actor")


def test_prompts_over_the_limits_are_dropped_and_counted_never_cut(prompt_file: Path, tmp_path: Path, caplog) -> None:
    # A generation limit below every actor prompt: nothing is generated and every answer is counted as dropped.
    data, settings = run_iteration(prompt_file, tmp_path, "dpo.max_prompt_tokens=1", "dpo.max_completion_tokens=12")
    expected = settings.prompts_per_iteration * settings.num_responses
    assert data.stats["actor/dropped/prompt_too_long"] == expected and data.stats["actor/responses"] == 0
    # DPO limits that the judge pairs' prompts (the judge prompt with its rubric) pass: those pairs are dropped.
    settings = build_settings(compose("+experiment=smoke", f"data.path={prompt_file}")).engine
    model, tokenizer = build_tiny()
    policy = Policy(RoleAdapters(model, AdapterSpec(r=4, alpha=8)), tokenizer, progress=False)
    collator = PairCollator(tokenizer, max_prompt_tokens=120, max_completion_tokens=256)
    pool = load_prompt_pool(str(prompt_file))
    made = make_iteration_data(policy, settings, pool, 1, tmp_path / "dpo", oversize=collator.oversize)
    stats = made.stats
    assert all(collator.oversize(pair) is None for pair in made.pairs)
    assert stats.get("pairs/judge_dropped/prompt_too_long", 0) > 0 and stats["pairs/judge_count"] == 0
    on_disk = json.loads((iteration_dir(tmp_path / "dpo", 1) / "stats.json").read_text())
    assert on_disk["pairs/judge_dropped/prompt_too_long"] == stats["pairs/judge_dropped/prompt_too_long"]
    dropped = int(stats["pairs/judge_dropped/prompt_too_long"])
    assert (
        f"1: {dropped} of {dropped} judge pairs (100%) were dropped as longer than dpo.max_prompt_tokens" in caplog.text
    )


def test_prompts_an_earlier_iteration_drew_are_counted_and_logged(prompt_file: Path, tmp_path: Path, caplog) -> None:
    settings = build_settings(compose("+experiment=smoke", f"data.path={prompt_file}")).engine
    model, tokenizer = build_tiny()
    policy = Policy(RoleAdapters(model, AdapterSpec(r=4, alpha=8)), tokenizer, progress=False)
    pool = load_prompt_pool(str(prompt_file))
    per_iteration = settings.prompts_per_iteration
    iteration = len(pool.prompts) // per_iteration + 1  # the first iteration past the end of the pool
    expected = (iteration - 1) * per_iteration + per_iteration - len(pool.prompts)
    assert [pool.reused(t, per_iteration) for t in (1, iteration)] == [0, expected] and expected > 0
    data = make_iteration_data(policy, settings, pool, iteration, tmp_path)
    assert data.stats["data/prompts_reused"] == expected
    assert f"{expected} of {per_iteration} prompts were drawn by an earlier iteration" in caplog.text


def test_meta_judge_targets_over_the_limit_are_dropped(prompt_file: Path, tmp_path: Path) -> None:
    from metareward.engine.phases import PROMPT_TOO_LONG, fitting_targets, meta_targets
    from metareward.storage.records import JudgmentRecord, PromptRecord, ResponseRecord

    model, tokenizer = build_tiny()
    prompt = PromptRecord("p", "Write a short answer.")
    response = ResponseRecord("p", 0, "An answer.", 3, True)
    judgments = [JudgmentRecord("p", 0, j, "Fine." * (1 + 40 * j), float(j), "parsed") for j in range(3)]
    targets, _ = meta_targets({"p": prompt}, [response], judgments)
    roomy = Policy(RoleAdapters(model, AdapterSpec(r=4, alpha=8)), tokenizer, max_prompt_tokens=100_000)
    assert fitting_targets(roomy, targets) == (targets, {})
    tight = Policy(roomy.switch, tokenizer, max_prompt_tokens=roomy_length(roomy, targets[0]) - 1)
    assert fitting_targets(tight, targets) == ([], {PROMPT_TOO_LONG: 1})


def roomy_length(policy: Policy, target) -> int:
    from metareward.core.judge_pairs import ordered_pairs
    from metareward.engine.phases import meta_prompt
    from metareward.model.chat import encode_prompt

    pairs = ordered_pairs(len(target.judgments))
    return max(len(encode_prompt(policy.tokenizer, meta_prompt(policy, target, m, n))) for m, n in pairs)


def test_choice_reads_are_not_held_to_the_prompt_limit() -> None:
    # A read's context is a prompt that fit, plus the text generated after it, plus the cue: it may pass the limit.
    from metareward.core.prompts import SCORE_CHOICES, SCORE_CUE
    from metareward.model.chat import encode_prompt, render_prompt

    model, tokenizer = build_tiny()
    prompt = render_prompt(tokenizer, "Rate this.")
    context = prompt + "A long justification of the rating. " * 4 + SCORE_CUE + " "
    limit = len(encode_prompt(tokenizer, prompt))
    policy = Policy(RoleAdapters(model, AdapterSpec(r=4, alpha=8)), tokenizer, max_prompt_tokens=limit, progress=False)
    probabilities = policy.choose("judge", [context], SCORE_CHOICES, batch_size=1, desc="scores")
    assert probabilities.shape == (1, len(SCORE_CHOICES)) and abs(probabilities.sum() - 1) < 1e-9


def test_a_chosen_answer_over_the_iterations_cap_drops_its_pair_counted(prompt_file: Path, tmp_path: Path) -> None:
    uncapped, _ = run_iteration(prompt_file, tmp_path / "a", "data.prompts_per_iteration=6")
    lengths = sorted(len(p.chosen) for p in uncapped.pairs if p.kind == "actor")
    cap = lengths[len(lengths) // 2]
    assert lengths[0] <= cap < lengths[-1], "the test needs chosen answers on both sides of the cap"
    capped, settings = run_iteration(
        prompt_file, tmp_path / "b", "data.prompts_per_iteration=6", f"pairs.max_chosen_chars_schedule=[{cap},null]"
    )
    assert settings.chosen_cap_for(1) == cap and settings.chosen_cap_for(2) is None
    kept = [p for p in uncapped.pairs if p.kind == "actor" and len(p.chosen) <= cap]
    assert [p for p in capped.pairs if p.kind == "actor"] == kept  # the same responses, the long-chosen pairs gone
    assert capped.stats["pairs/actor_dropped/chosen_too_long"] == sum(length > cap for length in lengths)
    assert "pairs/actor_dropped/chosen_too_long" not in uncapped.stats
