"""Pairwise judging as a config choice: `judge/ranking=pairwise` composes with every experiment and trainer (both
globbed, as in tests/test_experiments.py), a bad ranking ends the run with one config line before any model loads,
and a run with it chooses its actor pairs from the comparisons it wrote. The hand-worked numbers are in
tests/engine/test_ranking.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import EXPERIMENTS, REPO_ROOT, TRAINERS, compose, config_problems, engine_part

from metareward.core.actor_pairs import ScoredResponse
from metareward.engine.ranking import PairwiseRanking, PointwiseRanking, pairwise_scores
from metareward.run.training import train
from metareward.storage.records import ComparisonRecord

RANKINGS = {"pointwise": PointwiseRanking, "pairwise": PairwiseRanking}


@pytest.mark.parametrize("ranking", sorted(RANKINGS))
@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_ranking_composes_with_every_experiment_and_trainer(experiment: str, trainer: str, ranking: str) -> None:
    cfg = compose(f"+experiment={experiment}", f"trainer={trainer}", f"judge/ranking={ranking}")
    built, found = engine_part(cfg, "ranking")
    assert found == [] and type(built) is RANKINGS[ranking]


def test_pointwise_is_the_default_and_the_study_row_is_pairwise() -> None:
    built, found = engine_part(compose("+experiment=meta_reward"), "ranking")
    assert type(built) is PointwiseRanking and found == []
    study, found = engine_part(compose("+experiment=meta_reward_study_pairwise"), "ranking")
    assert isinstance(study, PairwiseRanking) and study.method == "bradley_terry" and found == []
    sweep = (REPO_ROOT / "conf" / "sweep" / "study_followups.yaml").read_text()
    assert "meta_reward_study_pairwise" in sweep


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("judge.ranking.method=elo", "judge.ranking.method='elo' is not one of ['bradley_terry', 'copeland']"),
        ("judge.ranking.l2=-1", "judge.ranking.l2=-1 must be a number >= 0"),
        ("+judge.ranking.template=Which?", "judge.ranking.template must show exactly the fields {instruction}"),
    ],
)
def test_a_bad_pairwise_ranking_is_one_config_problem(override: str, problem: str) -> None:
    found = config_problems("+experiment=smoke", "judge/ranking=pairwise", override)
    assert len(found) == 1 and found[0].startswith(problem), found


def test_a_bad_method_ends_the_run_with_one_line_before_any_model_loads(tmp_path: Path, capsys) -> None:
    from metareward.run.training import main

    with pytest.raises(SystemExit) as exit_status:
        main(compose("+experiment=smoke", "judge/ranking=pairwise", "judge.ranking.method=elo", output_dir=tmp_path))
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_status.value.code == 2 and lines == [
        "error: invalid config: judge.ranking.method='elo' is not one of ['bradley_terry', 'copeland']"
    ]
    assert not (tmp_path / "summary.json").exists()


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_pairwise_run_chooses_its_actor_pairs_from_its_comparisons(prompt_file: Path, tmp_path: Path) -> None:
    cfg = compose("+experiment=smoke", f"data.path={prompt_file}", "judge/ranking=pairwise", output_dir=tmp_path)
    train(cfg)
    for iteration in (1, 2):
        folder = tmp_path / "iterations" / f"iter_{iteration:02d}"
        responses, judgments = read_lines(folder / "responses.jsonl"), read_lines(folder / "judgments.jsonl")
        comparisons = [ComparisonRecord(**c) for c in read_lines(folder / "comparisons.jsonl")]
        judged = {(j["prompt_id"], j["response_index"]) for j in judgments if j["score"] is not None}
        eligible: dict[str, list[ScoredResponse]] = {}
        for r in responses:  # the smoke run keeps unfinished answers (pairs.unfinished=keep)
            if (r["prompt_id"], r["index"]) in judged:
                eligible.setdefault(r["prompt_id"], []).append(ScoredResponse(r["index"], r["text"], 0.0))
        compared = {p: rs for p, rs in eligible.items() if len(rs) >= 2}
        assert len(comparisons) == sum(len(rs) * (len(rs) - 1) for rs in compared.values()) > 0
        stats = json.loads((folder / "stats.json").read_text())
        assert stats["compare/comparisons"] == len(comparisons) and "judge/mean_score" in stats  # pointwise kept
        scores, (w1, w2) = pairwise_scores(compared, comparisons, "bradley_terry", float(cfg.meta_judge.elo_l2))
        assert (stats["compare/w1"], stats["compare/w2"]) == pytest.approx((w1, w2))
        actor = [p for p in read_lines(folder / "pairs.jsonl") if p["kind"] == "actor"]
        assert actor and stats["pairs/actor_count"] == len(actor)
        for pair in actor:  # each side's score is its ranking score, and the chosen side ranks higher
            chosen, rejected = (scores[(pair["prompt_id"], pair[f"{side}_index"])] for side in ("chosen", "rejected"))
            assert (pair["chosen_score"], pair["rejected_score"]) == pytest.approx(
                (chosen, rejected)
            ) and chosen > rejected
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert all(math.isfinite(it["train"]["loss"]) for it in summary["iterations"])


def test_the_comparisons_cue_is_checked_against_the_tokenizer_before_any_generation(monkeypatch) -> None:
    """Comparisons end "Winner: A", not the meta-judge's "Winner: Judgment A", so their probability reads are checked
    on their own cue: a tokenizer that cannot read "A"/"B" after "Winner: " alone is refused at config time, in the
    meta-judge's verdict mode only when the ranking is pairwise."""
    from metareward.config.build import build_settings
    from metareward.generation import choice_probs
    from metareward.model.tiny import build_tiny
    from metareward.run.training import cue_read_problems

    _, tokenizer = build_tiny()
    real_ids = choice_probs.choice_token_ids
    checked: list[tuple[str, tuple[str, ...]]] = []

    def refusing_the_bare_winner_cue(tokenizer, cue_text, choices):
        checked.append((cue_text, tuple(choices)))
        if cue_text == "Winner: ":
            raise ValueError("'A' is two tokens after 'Winner: '")
        return real_ids(tokenizer, cue_text, choices)

    def problems(*overrides: str) -> list[str]:
        engine = build_settings(compose("+experiment=smoke", *overrides)).engine
        return cue_read_problems(tokenizer, engine, evaluations_read_scores=False)

    assert problems("judge/ranking=pairwise", "meta_judge.verdict_mode=hybrid") == []  # the tiny tokenizer reads both
    monkeypatch.setattr(choice_probs, "choice_token_ids", refusing_the_bare_winner_cue)
    pairwise = problems("judge/ranking=pairwise", "meta_judge.verdict_mode=hybrid")
    assert ("Winner: Judgment ", ("A", "B")) in checked and ("Winner: ", ("A", "B")) in checked
    assert len(pairwise) == 1, pairwise
    assert pairwise[0].startswith("judge/ranking=pairwise's comparisons (meta_judge.verdict_mode=hybrid) read")
    assert "'A' is two tokens after 'Winner: '" in pairwise[0] and "meta_judge.verdict_mode=parse" in pairwise[0]
    assert problems("judge/ranking=pointwise", "meta_judge.verdict_mode=hybrid") == []
    assert problems("judge/ranking=pairwise", "meta_judge.verdict_mode=parse") == []
