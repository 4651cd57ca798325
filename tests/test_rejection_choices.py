"""Anchored rejections as a config choice: `pairs/rejected=seed` composes with every experiment and trainer (both
globbed), a bad choice is one config problem, and a whole run with it trains on pairs whose rejected side is M0's.
The picks are worked by hand in tests/core/test_anchored_pairs.py; the anchors' origin in
tests/engine/test_anchored_iteration.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import EXPERIMENTS, TRAINERS, compose, config_problems, engine_part

from metareward.engine.rejections import AnchoredRejections, OwnRejections
from metareward.run.training import train

CHOICES = {"own": OwnRejections, "seed": AnchoredRejections}


@pytest.mark.parametrize("choice", sorted(CHOICES))
@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_choice_composes_with_every_experiment_and_trainer(experiment: str, trainer: str, choice: str) -> None:
    cfg = compose(f"+experiment={experiment}", f"trainer={trainer}", f"pairs/rejected={choice}")
    built, found = engine_part(cfg, "rejections")
    assert found == [] and type(built) is CHOICES[choice]


def test_own_rejections_are_the_default_and_anchors_default_to_k_answers() -> None:
    built, found = engine_part(compose("+experiment=meta_reward"), "rejections")
    assert type(built) is OwnRejections and found == []
    assert OwnRejections().anchors(4) == 0
    assert AnchoredRejections().anchors(4) == 4 and AnchoredRejections(num_responses=2).anchors(4) == 2


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("pairs.rejected.num_responses=0", "pairs.rejected: metareward.engine.rejections.AnchoredRejections refused"),
        ("pairs.rejected.num_responses=two", "pairs.rejected: metareward.engine.rejections.AnchoredRejections refused"),
        ("+pairs.rejected.floor=1", "pairs.rejected: metareward.engine.rejections.AnchoredRejections does not accept"),
        ("pairs.rejected._target_=collections.OrderedDict", "pairs.rejected: collections.OrderedDict is not a "),
    ],
)
def test_a_bad_choice_is_one_config_problem(override: str, problem: str) -> None:
    found = config_problems("+experiment=smoke", "pairs/rejected=seed", override)
    assert len(found) == 1 and found[0].startswith(problem), found


def test_anchors_and_pairwise_ranking_do_not_mix() -> None:
    found = config_problems("+experiment=smoke", "pairs/rejected=seed", "judge/ranking=pairwise")
    assert len(found) == 1 and found[0].startswith("pairs/rejected=seed scores the anchors by their mean"), found


def test_a_run_with_anchored_rejections_trains_on_pairs_rejecting_m0s_answers(
    prompt_file: Path, tmp_path: Path
) -> None:
    train(compose("+experiment=smoke", f"data.path={prompt_file}", "pairs/rejected=seed", output_dir=tmp_path))
    for iteration in (1, 2):
        folder = tmp_path / "iterations" / f"iter_{iteration:02d}"
        anchors = [json.loads(line) for line in (folder / "anchor_responses.jsonl").read_text().splitlines()]
        pairs = [json.loads(line) for line in (folder / "pairs.jsonl").read_text().splitlines()]
        actor = [pair for pair in pairs if pair["kind"] == "actor"]
        anchor_texts = {(a["prompt_id"], a["text"]) for a in anchors}
        assert all((pair["prompt_id"], pair["rejected"]) in anchor_texts for pair in actor)
        stats = json.loads((folder / "stats.json").read_text())
        dropped = sum(v for k, v in stats.items() if k.startswith("pairs/actor_dropped/"))
        assert stats["pairs/actor_count"] == len(actor) and len(actor) + dropped == stats["data/prompts"]
        assert stats["anchor/responses"] == len(anchors) > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert all(math.isfinite(it["train"]["loss"]) for it in summary["iterations"] if it["actor_pairs"])
