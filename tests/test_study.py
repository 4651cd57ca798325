"""The study's code path (`make study`) on the tiny model: the real `+sweep=study` multirun of its three runs, then
the per-iteration table and figure that docs/study.md is made of."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT, write_prompts

pytestmark = pytest.mark.slow

STUDY_RUNS = ["meta_reward_study", "meta_reward_study_rho0", "self_reward_study"]

# The study's settings at the tiny model's size (what conf/experiment/smoke.yaml does for the demo).
TINY = (
    "model=tiny",
    "logger=none",
    "progress=false",
    "num_iterations=2",
    "data.prompts_per_iteration=3",
    "actor.num_responses=3",
    "actor.max_new_tokens=12",
    "judge.max_new_tokens=12",
    "judge.score_mode=probability",
    "meta_judge.max_new_tokens=8",
    "meta_judge.verdict_mode=probability",
    "pairs.unfinished=keep",
    "dpo.batch_size=2",
    "evaluation.num_prompts=6",
    "evaluation.max_new_tokens=16",
    "evaluation.judge_quality.num_pairs=4",
)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study")
    prompts = root / "prompts.jsonl"
    questions = ["Name three fruits.", "Explain gravity simply.", "Write a haiku about rain.", "What is 7 times 8?"]
    write_prompts(prompts, questions)
    sweep_dir = root / "sweep"
    command = [
        sys.executable,
        str(REPO_ROOT / "train.py"),
        "-m",
        "+sweep=study",
        f"data.path={prompts}",
        *TINY,
        f"hydra.sweep.dir={sweep_dir}",
    ]
    done = subprocess.run(command, cwd=root, check=False, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return sweep_dir


def test_the_sweep_runs_the_three_study_runs_with_their_settings(study_dir: Path) -> None:
    summaries = [json.loads((study_dir / str(n) / "summary.json").read_text()) for n in range(3)]
    assert [s["experiment"] for s in summaries] == STUDY_RUNS
    assert all(s["status"] == "finished" and len(s["iterations"]) == 2 for s in summaries)
    configs = [yaml.safe_load((study_dir / str(n) / ".hydra" / "config.yaml").read_text()) for n in range(3)]
    assert [(c["pairs"]["strategy"], c["pairs"]["rho"]) for c in configs] == [
        ("length_controlled", 0.4),
        ("length_controlled", 0.0),
        ("best_vs_worst", 0.0),
    ]
    assert [c["schedule"]["judge_training_iterations"] for c in configs] == [[1], [1], []]


def test_every_iteration_has_the_objective_and_the_answer_figures_with_intervals(study_dir: Path) -> None:
    for n in range(3):
        iterations = json.loads((study_dir / str(n) / "summary.json").read_text())["iterations"]
        baseline = {it["eval"]["baseline_seed_judge_score"] for it in iterations}
        assert len(baseline) == 1, "M0's answers and the seed judge are frozen: one score for every iteration"
        for it in iterations:
            figures = it["eval"]
            for name in ("seed_judge_score", "baseline_seed_judge_score", "win_rate", "avg_length", "finished_share"):
                low, value, high = figures[f"{name}_ci_low"], figures[name], figures[f"{name}_ci_high"]
                assert low <= value <= high, name
            assert 0.0 <= figures["seed_judge_score"] <= 5.0
            assert 0.0 <= figures["finished_share"] <= 1.0
            rows = json.loads(
                (study_dir / str(n) / "eval" / f"iter_{it['iteration']:02d}" / "win_rate.json").read_text()
            )
            scores = [row["seed_judge_score"] for row in rows["annotations"]]
            assert sum(scores) / len(scores) == pytest.approx(figures["seed_judge_score"])


def test_compare_per_iteration_prints_the_study_table_and_draws_its_figure(study_dir: Path, tmp_path: Path) -> None:
    figure = tmp_path / "study.png"
    command = [sys.executable, "-m", "metareward.compare", str(study_dir), "--per-iteration", "--plot", str(figure)]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:5] == ["run", "iteration", "objective", "M0 objective", "win %"]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:8]]
    assert [(row[0], row[1]) for row in rows] == [(f"experiment={r}", str(t)) for r in STUDY_RUNS for t in (1, 2)]
    objective = header.index("objective")
    assert all(" [" in row[objective] and row[objective].endswith("]") for row in rows)
    assert lines[8] == f"plot: {figure}" and figure.stat().st_size > 0
