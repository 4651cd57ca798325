"""The comparison phase on the tiny model, through one real iteration: every ordered pair of a prompt's eligible
answers compared once with its own seed, the stage written and reused on resume, and pointwise runs unchanged."""

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


def run_iteration(prompt_file: Path, run_dir: Path, *overrides: str, reuse: bool = False):
    settings = build_settings(compose("+experiment=smoke", f"data.path={prompt_file}", *overrides)).engine
    model, tokenizer = build_tiny()
    policy = Policy(RoleAdapters(model, AdapterSpec(r=4, alpha=8)), tokenizer, settings.max_prompt_tokens, False)
    return make_iteration_data(policy, settings, load_prompt_pool(str(prompt_file)), 1, run_dir, reuse=reuse)


def test_pairwise_iteration_compares_every_ordered_pair_and_resumes_the_stage(
    prompt_file: Path, tmp_path: Path
) -> None:
    data = run_iteration(prompt_file, tmp_path / "a", "judge/ranking=pairwise")
    out = iteration_dir(tmp_path / "a", 1)
    comparisons = [json.loads(line) for line in (out / "comparisons.jsonl").read_text().splitlines()]
    responses = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    per_prompt: dict[str, set[int]] = {}
    for r in responses:
        per_prompt.setdefault(r["prompt_id"], set()).add(r["index"])
    expected = {(p, i, j) for p, indices in per_prompt.items() for i in indices for j in indices if i != j}
    assert {(c["prompt_id"], c["first"], c["second"]) for c in comparisons} == expected
    assert len(comparisons) == len(expected) == data.stats["compare/comparisons"]
    assert data.stats["compare/w1"] + data.stats["compare/w2"] == pytest.approx(1.0) and "time/compare" in data.stats
    # Seeds per request: a second run writes the same comparisons; a resumed run reads the stage back.
    run_iteration(prompt_file, tmp_path / "b", "judge/ranking=pairwise")
    assert (iteration_dir(tmp_path / "b", 1) / "comparisons.jsonl").read_text() == (
        out / "comparisons.jsonl"
    ).read_text()
    resumed = run_iteration(prompt_file, tmp_path / "a", "judge/ranking=pairwise", reuse=True)
    assert resumed.stats["data/stages_reused"] >= 3 and resumed.pairs == data.pairs  # responses, judgments, comparisons


def test_a_pointwise_iteration_makes_no_comparisons(prompt_file: Path, tmp_path: Path) -> None:
    data = run_iteration(prompt_file, tmp_path)
    assert not (iteration_dir(tmp_path, 1) / "comparisons.jsonl").exists()
    assert not any(key.startswith("compare/") or key == "time/compare" for key in data.stats)
