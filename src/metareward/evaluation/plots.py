"""Report plots from run directories: win rates, lengths, judge quality and judge score histograms per iteration.

Used by the dashboard callback (PNG files in run_dir/plots/) and by notebooks/report.ipynb. Figures are built with
`matplotlib.figure.Figure` directly, so no pyplot backend or global state is involved.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from metareward.core.prompts import ADDITIVE_FIVE_POINT, JudgePrompt
from metareward.storage.artifacts import read_json_lines, write_file_atomic

Runs = Mapping[str, Sequence[Mapping[str, Any]]]  # run name -> iteration records as in summary.json


def load_summary(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))


def judge_scores(run_dir: str | Path) -> dict[int, list[float]]:
    """Iteration -> the judge's valid scores of the actor's responses (iterations/iter_XX/judgments.jsonl)."""
    scores: dict[int, list[float]] = {}
    for path in sorted(Path(run_dir).glob("iterations/iter_*/judgments.jsonl")):
        iteration = int(path.parent.name.split("_")[1])
        rows = read_json_lines(path)
        scores[iteration] = [float(r["score"]) for r in rows if r.get("score") is not None]
    return scores


def _value(record: Mapping[str, Any], key: str) -> float:
    """A figure from an iteration record: `eval` first, then `stats`; nan when absent."""
    for section in ("eval", "stats"):
        value = (record.get(section) or {}).get(key)
        if isinstance(value, (int, float)) and value is not None:
            return float(value)
    return math.nan


def _series(ax, runs: Runs, keys: Mapping[str, str], ylabel: str, title: str) -> None:
    for run, records in runs.items():
        iterations = [r["iteration"] for r in records]
        for key, label in keys.items():
            values = [_value(r, key) for r in records]
            if any(math.isfinite(v) for v in values):
                name = label if len(runs) == 1 else f"{run}: {label}"
                ax.plot(iterations, values, marker="o", label=name)
    ax.set_xlabel("iteration")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


def win_rate_figure(runs: Runs) -> Figure:
    """Raw, length-controlled and Arena-style win rates (with the bootstrap interval) per iteration."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.add_subplot()
    _series(
        ax,
        runs,
        {"win_rate": "win rate", "lc_win_rate": "LC win rate", "arena_score": "arena score"},
        "% against the baseline",
        "Win rates per iteration",
    )
    for records in runs.values():
        low = [_value(r, "arena_ci_low") for r in records]
        high = [_value(r, "arena_ci_high") for r in records]
        if any(math.isfinite(v) for v in low):
            ax.fill_between([r["iteration"] for r in records], low, high, alpha=0.15)
    ax.axhline(50.0, color="grey", linewidth=0.8, linestyle=":")
    return figure


def length_figure(runs: Runs) -> Figure:
    """Answer lengths per iteration: evaluation answers, baseline, all training responses, chosen and rejected."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    keys = {
        "avg_length": "eval answers",
        "baseline_avg_length": "baseline answers",
        "actor/mean_chars": "training responses",
        "pairs/actor_chosen_chars": "chosen",
        "pairs/actor_rejected_chars": "rejected",
    }
    _series(figure.add_subplot(), runs, keys, "characters", "Length per iteration")
    return figure


def judge_quality_figure(runs: Runs) -> Figure:
    figure = Figure(figsize=(6, 4), layout="constrained")
    keys = {
        "judge_accuracy": "accuracy (ties left out)",
        "judge_accuracy_with_ties": "accuracy (ties as misses)",
        "judge_spearman": "Spearman",
        "judge_kendall": "Kendall tau",
        "meta/prefers_higher_score": "meta: prefers higher score",
        "meta/positional_bias": "meta: prefers first",
    }
    _series(figure.add_subplot(), runs, keys, "agreement / correlation / share", "Judge and meta-judge per iteration")
    return figure


def score_histogram_figure(
    scores: Mapping[int, Sequence[float]], judge_prompt: JudgePrompt = ADDITIVE_FIVE_POINT
) -> Figure:
    """Histogram of the judge's scores of the actor's responses, one outline per iteration, over the judge prompt's
    scale (the run's `judge/prompt`; the default prompt's 0-5 when not given)."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.add_subplot()
    low, high = judge_prompt.min_score, judge_prompt.max_score
    bins = [low + x / 4 - 0.125 for x in range(4 * (high - low) + 2)]  # quarter-point bins over [low, high]
    for iteration, values in sorted(scores.items()):
        if values:
            ax.hist(values, bins=bins, histtype="step", linewidth=1.5, label=f"iteration {iteration}")
    ax.set_xlabel("judge score")
    ax.set_ylabel("judgments")
    ax.set_title("Judge score distribution")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return figure


def report_figures(
    runs: Runs, scores: Mapping[int, Sequence[float]] | None = None, judge_prompt: JudgePrompt = ADDITIVE_FIVE_POINT
) -> dict[str, Figure]:
    figures = {
        "win_rates": win_rate_figure(runs),
        "lengths": length_figure(runs),
        "judge_quality": judge_quality_figure(runs),
    }
    if scores is not None:
        figures["score_histogram"] = score_histogram_figure(scores, judge_prompt)
    return figures


def save_figures(figures: Mapping[str, Figure], directory: str | Path) -> list[Path]:
    """Write each figure as directory/<name>.png; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, figure in figures.items():
        path = directory / f"{name}.png"
        write_file_atomic(path, lambda temporary, figure=figure: figure.savefig(temporary, dpi=100, format="png"))
        paths.append(path)
    return paths
