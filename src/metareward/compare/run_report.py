"""What a run prints about its own figures: one compact line per iteration while it runs, and at its end a table of
every iteration (pairs, loss, reward accuracy, win rate, LC win rate, the seed judge's objective, answer length,
time) read from its `summary.json`, with figures rounded to what they can tell apart."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from metareward.compare.iteration_report import Column, dotted, number

RESULT_COLUMNS = (
    Column("loss", "train.loss", digits=3),
    Column("reward acc", "train.reward_accuracy", digits=2),
    Column("win %", "eval.win_rate", digits=1),
    Column("LC %", "eval.lc_win_rate", digits=1),
    Column("objective", "eval.seed_judge_score", digits=2),
    Column("length", "eval.avg_length", digits=0),
    Column("time s", "seconds", digits=0),
)


def rounded(value: Any, digits: int = 3) -> str:
    """A figure as a person reads it: `digits` decimals for values of order one, three significant digits for
    small ones (a reward margin of 0.00032), "-" for none."""
    figure = number(value)
    if figure is None:
        return "-"
    if figure != 0 and abs(figure) < 10.0**-digits:
        return f"{figure:.{max(digits, 2 - math.floor(math.log10(abs(figure))))}f}"
    return f"{figure:.{digits}f}"


def percent(value: Any, digits: int = 1) -> str:
    """ "49.9%", or "-" for none."""
    text = rounded(value, digits)
    return text if text == "-" else f"{text}%"


def figures_line(figures: Mapping[str, Any], digits: int = 3) -> str:
    """ "loss 0.693, reward accuracy 0.333, ..." from a flat mapping of names to numbers."""
    return ", ".join(f"{name.replace('_', ' ')} {rounded(value, digits)}" for name, value in figures.items())


def results_table(iterations: Sequence[Mapping[str, Any]], columns: Sequence[Column] = RESULT_COLUMNS) -> str:
    """The run's iterations as an aligned text table; columns no iteration has a value for are left out."""
    present = [c for c in columns if any(number(dotted(it, c.metric)) is not None for it in iterations)]
    header = ["iteration", "pairs", *(c.title for c in present)]
    rows = [
        [
            str(it.get("iteration", "-")),
            f"{it.get('actor_pairs', 0)}+{it.get('judge_pairs', 0)}",
            *(rounded(dotted(it, c.metric), c.digits) for c in present),
        ]
        for it in iterations
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in [header, *rows]]
    note = "pairs: actor+judge; objective: the seed judge's score of the answers; length: characters"
    return "\n".join([*lines, note])
