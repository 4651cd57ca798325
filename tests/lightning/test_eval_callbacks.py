"""Evaluation callbacks in a real (smoke) run: summary.json figures per iteration, files, plots, the offline wandb
run, and the report notebook executed on that run directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import REPO_ROOT, compose, write_prompts

from metareward.run.training import train

SMALL_EVAL = (
    "evaluation.num_prompts=6",
    "evaluation.max_new_tokens=16",
    "evaluation.judge_quality.num_pairs=6",
)


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory) -> Path:
    """One two-iteration smoke run with every evaluation callback and the wandb logger (offline)."""
    run_dir = tmp_path_factory.mktemp("eval_run")
    prompts = run_dir / "prompts.jsonl"
    questions = ["Name three fruits.", "Explain gravity simply.", "Write a haiku about rain.", "What is 7 times 8?"]
    write_prompts(prompts, questions)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    cfg = compose("+experiment=smoke", f"data.path={prompts}", "logger=wandb", *SMALL_EVAL, output_dir=run_dir)
    train(cfg)
    return run_dir


def test_summary_holds_the_eval_figures_for_every_iteration(eval_run: Path) -> None:
    summary = json.loads((eval_run / "summary.json").read_text())
    assert summary["status"] == "finished" and [it["iteration"] for it in summary["iterations"]] == [1, 2]
    for it in summary["iterations"]:
        figures = it["eval"]
        for name in (
            "win_rate",
            "lc_win_rate",
            "arena_score",
            "arena_ci_low",
            "arena_ci_high",
            "avg_length",
            "baseline_avg_length",
            "judge_accuracy",
            "judge_accuracy_with_ties",
            "judge_spearman",
            "judge_kendall",
            "judge_score_mean",
            "seed_judge_score",
            "baseline_seed_judge_score",
            "finished_share",
            "baseline_finished_share",
            "win_rate_ci_low",
        ):
            assert name in figures, name
        assert 0.0 <= figures["win_rate"] <= 100.0 and figures["avg_length"] > 0
        assert figures["arena_ci_low"] <= figures["arena_score"] <= figures["arena_ci_high"]
        assert 0.0 <= figures["judge_accuracy_with_ties"] <= 1.0
        assert figures["eval_prompts"] == 6
        annotations = json.loads((eval_run / "eval" / f"iter_{it['iteration']:02d}" / "win_rate.json").read_text())
        assert len(annotations["annotations"]) == 6
    baseline = (eval_run / "eval" / "baseline_answers.jsonl").read_text().splitlines()
    assert len(baseline) == 6 and all(json.loads(line)["source"] == "seed" for line in baseline)


def test_run_directory_holds_plots_and_the_offline_wandb_run(eval_run: Path) -> None:
    names = {p.name for p in (eval_run / "plots").glob("*.png")}
    assert {"win_rates.png", "lengths.png", "judge_quality.png", "score_histogram.png"} <= names
    runs = list((eval_run / "wandb").glob("offline-run-*"))
    assert runs and list(runs[0].glob("*.wandb"))
    media = list(runs[0].rglob("media/table/**/*.json")) + list(runs[0].rglob("media/images/**/*.png"))
    assert media, "no wandb tables or images were written"
    # the per-iteration figures are charted against the iteration: the run's log holds the metric definitions
    log = b"".join(path.read_bytes() for path in runs[0].glob("*.wandb"))
    assert b"eval/*" in log and b"pairs/*" in log


def test_report_notebook_runs_on_the_run_directory(eval_run: Path, monkeypatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("METAREWARD_RUN_DIRS", str(eval_run))
    notebook = nbformat.read(REPO_ROOT / "notebooks" / "report.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT / "notebooks")}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # the four report plots and the study's per-iteration figure
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 5
