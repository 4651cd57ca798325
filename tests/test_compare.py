"""The sweep comparison: finding runs, reading overrides, the table, the plot, the objective value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metareward.compare.runs import final_metric, find_summaries, format_table, main, run_row, varying_keys


def _fake_run(directory: Path, overrides: list[str], loss: float, lc: float | None) -> None:
    (directory / ".hydra").mkdir(parents=True)
    (directory / ".hydra" / "overrides.yaml").write_text("".join(f"- {item}\n" for item in overrides))
    evals = {} if lc is None else {"lc_win_rate": lc}
    iterations = [
        {"iteration": 1, "actor_pairs": 1, "judge_pairs": 0, "train": {"loss": 9.0}, "eval": {}, "seconds": 1.0},
        {
            "iteration": 2,
            "actor_pairs": 3,
            "judge_pairs": 1,
            "train": {"loss": loss, "reward_accuracy": 0.5},
            "eval": evals,
            "seconds": 2.5,
            "stats": {"judge/mean_score": 3.25},
        },
    ]
    summary = {"experiment": "smoke", "status": "finished", "seconds": 4.0, "iterations": iterations}
    (directory / "summary.json").write_text(json.dumps(summary))


@pytest.fixture()
def sweep(tmp_path: Path) -> Path:
    for number, (judgments, loss, lc) in enumerate([(2, 0.69, 0.41), (3, 0.68, None)] + [(5, 0.6, 0.5)] * 9):
        _fake_run(tmp_path / str(number), ["+experiment=smoke", f"judge.num_judgments={judgments}"], loss, lc)
    return tmp_path


def test_find_and_read(sweep: Path) -> None:
    summaries = find_summaries([sweep, sweep / "0"])  # each run once, jobs in numeric order
    assert [p.parent.name for p in summaries] == [str(n) for n in range(11)]
    row = run_row(summaries[0])
    assert row["overrides"] == {"+experiment": "smoke", "judge.num_judgments": "2"}
    assert row["train.loss"] == 0.69 and row["eval.lc_win_rate"] == 0.41 and row["iterations"] == 2
    assert row["stats.judge/mean_score"] == 3.25
    assert varying_keys([run_row(p) for p in summaries]) == ["judge.num_judgments"]


def test_table_lists_every_run(sweep: Path) -> None:
    rows = [run_row(p) for p in find_summaries([sweep])[:2]]
    table = format_table(rows, ["train.loss", "eval.lc_win_rate"]).splitlines()
    assert table[0].split() == ["run", "judge.num_judgments", "status", "iters", "train.loss", "eval.lc_win_rate"]
    assert table[2].split() == ["0", "2", "finished", "2", "0.69", "0.41"]
    assert table[3].split() == ["1", "3", "finished", "2", "0.68", "-"]


def test_cli_table_and_plot(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "plots" / "sweep.png"
    assert main([str(sweep / "0"), str(sweep / "1"), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "eval.lc_win_rate" in out and "train.reward_accuracy" in out and "eval.win_rate" not in out
    assert plot.is_file() and plot.read_bytes()[:4] == b"\x89PNG"


def test_cli_without_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 2
    assert "no summary.json" in capsys.readouterr().err


def test_final_metric(sweep: Path) -> None:
    assert final_metric(sweep / "0" / "summary.json") == 0.41
    assert final_metric(sweep / "1" / "summary.json", "train.loss") == 0.68
    with pytest.raises(ValueError, match="eval.lc_win_rate"):
        final_metric(sweep / "1" / "summary.json")
