"""The per-iteration study table and figure from hand-made summaries (the real runs are in test_study.py)."""

from __future__ import annotations

import json
from pathlib import Path

from metareward.compare.iteration_report import Column, format_cell, markdown_table, plot_iterations
from metareward.compare.runs import main


def _iteration(t: int, score: float, win: float, **stats: float) -> dict:
    return {
        "iteration": t,
        "actor_pairs": 10 + t,
        "eval": {
            "seed_judge_score": score,
            "seed_judge_score_ci_low": score - 0.25,
            "seed_judge_score_ci_high": score + 0.5,
            "baseline_seed_judge_score": 2.0,
            "win_rate": win,
            "lc_win_rate": None,
            "avg_length": 300.0 - 10 * t,
        },
        "stats": stats,
    }


RUNS = {
    "rho=0.4": [_iteration(1, 2.5, 55.0, **{"meta/positional_bias": 0.75}), _iteration(2, 3.0, 60.0)],
    "rho=0": [_iteration(1, 2.25, 52.5)],
}


def test_a_cell_is_the_mean_with_its_interval_or_a_dash() -> None:
    record = RUNS["rho=0.4"][0]
    assert format_cell(record, Column("objective", "eval.seed_judge_score", interval=True)) == "2.50 [2.25, 3.00]"
    assert format_cell(record, Column("win", "eval.win_rate", digits=1)) == "55.0"
    assert format_cell(record, Column("meta", "stats.meta/positional_bias")) == "0.75"
    assert format_cell(record, Column("lc", "eval.lc_win_rate")) == "-"  # None in the summary
    assert format_cell(RUNS["rho=0"][0], Column("meta", "stats.meta/positional_bias")) == "-"  # absent


def test_the_table_has_a_row_per_run_and_iteration_and_only_columns_with_values() -> None:
    lines = markdown_table(RUNS).splitlines()
    assert lines[0] == "| run | iteration | objective | M0 objective | win % | length | meta: first | pairs |"
    assert lines[1] == "|---|---|---|---|---|---|---|---|"
    assert lines[2] == "| rho=0.4 | 1 | 2.50 [2.25, 3.00] | 2.00 | 55.0 | 290 | 0.75 | 11 |"
    assert lines[4] == "| rho=0 | 1 | 2.25 [2.00, 2.75] | 2.00 | 52.5 | 290 | - | 11 |"
    assert len(lines) == 5


def test_the_figure_is_written_only_when_there_is_something_to_draw(tmp_path: Path) -> None:
    assert plot_iterations(RUNS, tmp_path / "study.png") and (tmp_path / "study.png").stat().st_size > 0
    assert not plot_iterations({"empty": [{"iteration": 1, "eval": {}}]}, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_compare_per_iteration_names_runs_by_what_differs(tmp_path: Path, capsys) -> None:
    for number, (rho, iterations) in enumerate(zip(("0.4", "0"), RUNS.values())):
        run = tmp_path / str(number)
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(f"- +experiment=meta_reward_study\n- pairs.rho={rho}\n")
        summary = {"experiment": "meta_reward_study", "status": "finished", "iterations": iterations}
        (run / "summary.json").write_text(json.dumps(summary))
    assert main([str(tmp_path), "--per-iteration"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == ["| pairs.rho=0.4", "| pairs.rho=0.4", "| pairs.rho=0"]
