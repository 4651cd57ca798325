"""Anchored rejections in one data-making iteration on the tiny model: the anchors are the seed model's answers
(the adapters' changes never reach them), each actor pair rejects one of them, and every drop is counted."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from helpers import compose

from metareward.config.build import build_settings
from metareward.engine import phases
from metareward.engine.iteration import make_iteration_data
from metareward.engine.prompt_pool import load_prompt_pool
from metareward.generation.policy import FixedModel, Policy
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.roles import SEED_ROLE
from metareward.model.tiny import build_tiny
from metareward.storage.records import PromptRecord
from metareward.storage.run_layout import iteration_dir


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def trained_looking_policy(settings) -> Policy:
    """The tiny model with its actor adapter moved away from zero, as after DPO: M_t differs from M0."""
    model, tokenizer = build_tiny()
    adapters = RoleAdapters(model, AdapterSpec(r=4, alpha=8))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in adapters.model.named_parameters():
            if "lora_B" in name and ".actor." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return Policy(adapters, tokenizer, settings.max_prompt_tokens, False)


def test_anchored_pairs_reject_the_seed_models_answers(prompt_file: Path, tmp_path: Path) -> None:
    cfg = compose("+experiment=smoke", f"data.path={prompt_file}", "pairs/rejected=seed", "pairs.unfinished=keep")
    settings = build_settings(cfg).engine
    policy = trained_looking_policy(settings)
    data = make_iteration_data(policy, settings, load_prompt_pool(str(prompt_file)), 1, tmp_path)
    out = iteration_dir(tmp_path, 1)
    own, anchors = lines(out / "responses.jsonl"), lines(out / "anchor_responses.jsonl")
    k = settings.num_responses
    assert all(r["index"] < k for r in own) and all(k <= r["index"] < 2 * k for r in anchors)
    assert len(lines(out / "anchor_judgments.jsonl")) == len(anchors) * settings.num_judgments

    # The anchors are what the untouched base model answers (the same tiny weights without any adapter) ...
    prompts = [PromptRecord(**p) for p in lines(out / "prompts.jsonl")]
    model, tokenizer = build_tiny()
    seed_model = Policy(FixedModel(model), tokenizer, settings.max_prompt_tokens, False)
    answering = phases.Answering(role=SEED_ROLE, first_index=k)
    again = phases.respond(seed_model, settings, 1, prompts, answering).records
    assert [(r.prompt_id, r.index, r.text) for r in again] == [(r["prompt_id"], r["index"], r["text"]) for r in anchors]
    # ... and not what the moved actor adapter answers.
    assert {r["text"] for r in own}.isdisjoint({r["text"] for r in anchors})

    texts = lambda records, pid: {r["text"] for r in records if r["prompt_id"] == pid}
    actor = [p for p in data.pairs if p.kind == "actor"]
    for pair in actor:
        assert pair.chosen in texts(own, pair.prompt_id) and pair.rejected in texts(anchors, pair.prompt_id)
        assert pair.chosen_index < k <= pair.rejected_index and pair.chosen_score > pair.rejected_score
    drops = sum(v for key, v in data.stats.items() if key.startswith("pairs/actor_dropped/"))
    assert len(actor) + drops == settings.prompts_per_iteration == data.stats["data/prompts"]
    assert data.stats["anchor/responses"] == len(anchors)
    assert "meta/verdicts" in data.stats  # the meta-judge still works on M_t's own judgments


def test_without_anchors_no_anchor_stage_runs(prompt_file: Path, tmp_path: Path) -> None:
    settings = build_settings(compose("+experiment=smoke", f"data.path={prompt_file}")).engine
    data = make_iteration_data(
        trained_looking_policy(settings), settings, load_prompt_pool(str(prompt_file)), 1, tmp_path
    )
    assert not (iteration_dir(tmp_path, 1) / "anchor_responses.jsonl").exists()
    assert not any(key.startswith("anchor/") for key in data.stats)
