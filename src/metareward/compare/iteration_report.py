"""Per-iteration figures of several runs side by side: the study's table and figure (`compare --per-iteration`).

A run is a directory with a `summary.json`. Each of its iterations gives one row: the loop's own objective on
held-out prompts (the frozen seed judge's score of the actor's answers, next to M0's answers' score), the win rate
and LC win rate against M0, the answers' length and share that finish, judge quality and the meta-judge's biases.
Means over prompts carry their bootstrap interval (`<name>_ci_low`, `<name>_ci_high` in the summary).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Column:
    """One table column: `metric` is a dotted name in a summary iteration; `interval` when it has a CI."""

    title: str
    metric: str
    interval: bool = False
    digits: int = 2


STUDY_COLUMNS = (
    Column("objective", "eval.seed_judge_score", interval=True),
    Column("M0 objective", "eval.baseline_seed_judge_score", interval=True),
    Column("win %", "eval.win_rate", interval=True, digits=1),
    Column("LC %", "eval.lc_win_rate", digits=1),
    Column("length", "eval.avg_length", interval=True, digits=0),
    Column("M0 length", "eval.baseline_avg_length", digits=0),
    Column("finished", "eval.finished_share", interval=True),
    Column("judge acc", "eval.judge_accuracy"),
    Column("meta: higher", "stats.meta/prefers_higher_score"),
    Column("meta: first", "stats.meta/positional_bias"),
    Column("pairs", "actor_pairs", digits=0),
    Column("judge pairs", "judge_pairs", digits=0),
)


def dotted(record: Mapping[str, Any], name: str) -> Any:
    """record["eval"]["win_rate"] for "eval.win_rate"; a stats key keeps its slash ("stats.meta/positional_bias")."""
    value: Any = record
    for part in name.split(".", 1) if "." in name else [name]:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def format_cell(record: Mapping[str, Any], column: Column) -> str:
    """ "3.21 [3.10, 3.33]" for a mean with its interval, "3.21" without one, "-" when the run has no value."""
    value = number(dotted(record, column.metric))
    if value is None:
        return "-"
    text = f"{value:.{column.digits}f}"
    low, high = (number(dotted(record, f"{column.metric}_ci_{end}")) for end in ("low", "high"))
    if column.interval and low is not None and high is not None:
        text += f" [{low:.{column.digits}f}, {high:.{column.digits}f}]"
    return text


def markdown_table(runs: Mapping[str, Sequence[Mapping[str, Any]]], columns: Sequence[Column] = STUDY_COLUMNS) -> str:
    """One row per (run, iteration), a Markdown pipe table; columns no run has a value for are left out."""
    records = [(name, record) for name, iterations in runs.items() for record in iterations]
    present = [c for c in columns if any(number(dotted(r, c.metric)) is not None for _, r in records)]
    header = ["run", "iteration", *(c.title for c in present)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, record in records:
        cells = [name, str(record.get("iteration", "-")), *(format_cell(record, c) for c in present)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _series(iterations: Sequence[Mapping[str, Any]], metric: str) -> tuple[list[int], list[float], list[float]]:
    """Iteration numbers, values and half-widths (lower, upper) of `metric` where the run has it."""
    xs, ys, errors = [], [], [[], []]
    for record in iterations:
        value = number(dotted(record, metric))
        if value is None:
            continue
        xs.append(int(record["iteration"]))
        ys.append(value)
        low, high = (number(dotted(record, f"{metric}_ci_{end}")) for end in ("low", "high"))
        errors[0].append(value - low if low is not None else 0.0)
        errors[1].append(high - value if high is not None else 0.0)
    return xs, ys, errors


# (panel title, metric, the M0 reference drawn dashed: a metric of the first iteration or a constant)
PANELS = (
    ("objective: seed judge's score", "eval.seed_judge_score", "eval.baseline_seed_judge_score"),
    ("win rate vs M0 (%)", "eval.win_rate", 50.0),
    ("LC win rate vs M0 (%)", "eval.lc_win_rate", 50.0),
    ("answer length (chars)", "eval.avg_length", "eval.baseline_avg_length"),
)


def iteration_figure(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure | None:
    """A matplotlib Figure: one panel per figure of PANELS that some run has, one line per run with its interval as
    error bars, M0's value dashed; None when no run has any of them."""
    from matplotlib.figure import Figure

    panels = [p for p in PANELS if any(_series(its, p[1])[0] for its in runs.values())]
    if not panels:
        return None
    figure = Figure(figsize=(3.6 * len(panels), 3.3), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)
    for axis, (title, metric, reference) in zip(axes[0], panels):
        for name, iterations in runs.items():
            xs, ys, errors = _series(iterations, metric)
            if xs:
                axis.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=name)
        level = reference if isinstance(reference, float) else _first(runs, reference)
        if level is not None:
            axis.axhline(level, color="grey", linestyle="--", linewidth=1, label="M0")
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("iteration", fontsize=8)
        axis.xaxis.get_major_locator().set_params(integer=True)
    axes[0][0].legend(fontsize=7)
    return figure


def plot_iterations(runs: Mapping[str, Sequence[Mapping[str, Any]]], path: Path) -> bool:
    """Save `iteration_figure(runs)` as a PNG file; False (and nothing written) when there is nothing to draw."""
    figure = iteration_figure(runs)
    if figure is None:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return True


def _first(runs: Mapping[str, Sequence[Mapping[str, Any]]], metric: str) -> float | None:
    """M0's value: the reference metric of the first iteration of the first run that has it (it is the same for
    every run of one evaluation set)."""
    for iterations in runs.values():
        for record in iterations:
            value = number(dotted(record, metric))
            if value is not None:
                return value
    return None
