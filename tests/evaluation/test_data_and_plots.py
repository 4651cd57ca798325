"""Evaluation files (prompts, labelled pairs, the baseline cache) and the report plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import REPO_ROOT

from metareward.evaluation.data import (
    BaselineAnswer,
    EvalPrompt,
    EvaluationDataError,
    cached_baseline,
    load_eval_prompts,
    load_labelled_pairs,
    save_baseline,
)
from metareward.evaluation.plots import report_figures, save_figures


def test_shipped_files_load() -> None:
    prompts = load_eval_prompts(REPO_ROOT / "data/eval/heldout.jsonl", 16)
    assert len(prompts) == 16 and prompts[0].id == "eval-0001" and prompts[0].reference is None
    pairs = load_labelled_pairs(REPO_ROOT / "data/judge_quality/labelled_pairs.jsonl", 24)
    assert len(pairs) == 24 and all(p.good_score > p.poor_score for p in pairs)


def test_reference_answers_and_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text(
        json.dumps({"instruction": "Say hi.", "output": "Hi!"}) + "\n" + json.dumps({"instruction": "x"}) + "\n"
    )
    assert load_eval_prompts(path, 1, reference_field="output") == [EvalPrompt("eval-0001", "Say hi.", "Hi!")]
    with pytest.raises(EvaluationDataError, match="row 2 has no 'output' field"):
        load_eval_prompts(path, 2, reference_field="output")
    with pytest.raises(EvaluationDataError, match="does not exist"):
        load_labelled_pairs(tmp_path / "none.jsonl", 3)


def test_baseline_cache_is_used_only_for_the_same_prompts(tmp_path: Path) -> None:
    prompts = [EvalPrompt("a", "q1"), EvalPrompt("b", "q2")]
    path = tmp_path / "eval" / "baseline_answers.jsonl"
    assert cached_baseline(path, prompts) is None
    answers = [BaselineAnswer("b", "two", "seed"), BaselineAnswer("a", "one", "seed")]
    save_baseline(path, answers)
    assert [a.text for a in cached_baseline(path, prompts)] == ["one", "two"]  # in prompt order
    assert cached_baseline(path, prompts + [EvalPrompt("c", "q3")]) is None


def test_report_figures_are_saved_as_png(tmp_path: Path) -> None:
    records = [
        {
            "iteration": t,
            "eval": {
                "win_rate": w,
                "lc_win_rate": None,
                "arena_score": w,
                "arena_ci_low": w - 5,
                "arena_ci_high": w + 5,
                "avg_length": 100 + t,
                "judge_accuracy": 0.7,
            },
            "stats": {"pairs/actor_chosen_chars": 80.0, "meta/positional_bias": 0.5},
        }
        for t, w in ((1, 52.0), (2, 58.0))
    ]
    paths = save_figures(report_figures({"run": records}, {1: [3.0, 4.5], 2: [4.0]}), tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["judge_quality.png", "lengths.png", "score_histogram.png", "win_rates.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
