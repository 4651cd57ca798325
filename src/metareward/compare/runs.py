"""`python -m metareward.compare <multirun dir or run dirs...>`: one table of the runs of a sweep, side by side.

Every `summary.json` under the given directories is one run. Its row holds the run's command-line overrides
(from `.hydra/overrides.yaml` beside it; the ones every run shares are left out of the table) and the metrics
of its last finished iteration: pair counts, `train.*`, `eval.*` when an evaluation callback wrote them, the
iteration's seconds, and the run's status and total seconds. `--plot out.png` draws one bar chart per metric.

`--per-iteration` prints every iteration of every run instead, as a Markdown table of the study's figures with
their bootstrap intervals (see iteration_report.py); with it, `--plot` draws those figures per iteration, one line
per run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

DEFAULT_METRICS = (
    "actor_pairs",
    "judge_pairs",
    "train.loss",
    "train.reward_accuracy",
    "eval.lc_win_rate",
    "eval.win_rate",
    "seconds",
)


def find_summaries(paths: Sequence[str | Path]) -> list[Path]:
    """Every summary.json at or under the given paths, sorted, each once."""
    found: set[Path] = set()
    for path in map(Path, paths):
        if path.is_file() and path.name == "summary.json":
            found.add(path.resolve())
        elif path.is_dir():
            found.update(p.resolve() for p in path.rglob("summary.json"))
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> list[Any]:
    # Hydra numbers sweep jobs 0, 1, ..., 10: sort "10" after "9".
    return [int(part) if part.isdigit() else part for part in path.parts]


def read_overrides(run_dir: Path) -> list[str]:
    """The run's overrides from `.hydra/overrides.yaml`, or [] when the run was not made by Hydra."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [str(item) for item in (yaml.safe_load(path.read_text(encoding="utf-8")) or [])]


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"loss": 1}} -> {"train.loss": 1}."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def run_row(summary_path: Path) -> dict[str, Any]:
    """One run: `run` (its directory), `overrides` (key=value dict), `status`, `total_seconds`, `iterations`,
    and the flattened metrics of its last iteration."""
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    iterations = summary.get("iterations") or []
    overrides = {}
    for item in read_overrides(summary_path.parent):
        key, _, value = item.partition("=")
        overrides[key] = value
    last = flatten(iterations[-1]) if iterations else {}
    return {
        "run": str(summary_path.parent),
        "overrides": overrides,
        "status": summary.get("status"),
        "total_seconds": summary.get("seconds"),
        "iterations": len(iterations),
        **last,
    }


def final_metric(summary_path: Path, name: str = "eval.lc_win_rate") -> float:
    """The last iteration's value of a dotted metric, as the objective a Hydra sweeper (Optuna) maximises.

    Raises ValueError naming the metric when the run has no finished iteration or no such number.
    """
    value = run_row(Path(summary_path)).get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(  # noqa: TRY004 - a user-facing data problem, reported as the other bad-input errors
            f"{summary_path} has no number {name!r} at its last iteration; enable the evaluation callback that "
            "writes it or search against another metric"
        )
    return float(value)


def varying_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Override keys whose value differs between runs (all keys when there is one run)."""
    keys = list(dict.fromkeys(key for row in rows for key in row["overrides"]))
    if len(rows) < 2:
        return keys
    return [key for key in keys if len({row["overrides"].get(key) for row in rows}) > 1]


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> str:
    """A plain-text table: one row per run, columns = run name, varying overrides, status, iterations, metrics."""
    keys = varying_keys(rows)
    header = ["run", *keys, "status", "iters", *metrics]
    body = [
        [
            Path(row["run"]).name,
            *(row["overrides"].get(k, "-") for k in keys),
            _cell(row["status"]),
            str(row["iterations"]),
            *(_cell(row.get(m)) for m in metrics),
        ]
        for row in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot_runs(rows: Sequence[dict[str, Any]], metrics: Sequence[str], path: Path) -> list[str]:
    """One bar chart per metric that at least one run has, runs labelled by their varying overrides.

    Returns the metrics plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [m for m in metrics if any(isinstance(row.get(m), (int, float)) for row in rows)]
    if not present:
        return []
    keys = varying_keys(rows)
    labels = [" ".join(f"{k}={row['overrides'].get(k, '-')}" for k in keys) or Path(row["run"]).name for row in rows]
    figure, axes = plt.subplots(1, len(present), figsize=(3.2 * len(present), 3.4), squeeze=False)
    for axis, metric in zip(axes[0], present):
        values = [row.get(metric) if isinstance(row.get(metric), (int, float)) else math.nan for row in rows]
        axis.bar(range(len(rows)), values)
        axis.set_title(metric, fontsize=9)
        axis.set_xticks(range(len(rows)), labels, rotation=45, ha="right", fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return present


def run_labels(rows: Sequence[dict[str, Any]]) -> list[str]:
    """A name per run: its varying overrides (k=v), else its directory's name; unique names stay as they are."""
    keys = varying_keys(rows)
    labels = [" ".join(f"{k.lstrip('+')}={row['overrides'].get(k, '-')}" for k in keys) for row in rows]
    labels = [label or Path(row["run"]).name for label, row in zip(labels, rows)]
    repeated = {label for label in labels if labels.count(label) > 1}
    return [f"{label} ({Path(row['run']).name})" if label in repeated else label for label, row in zip(labels, rows)]


def print_iterations(summaries: Sequence[Path], rows: Sequence[dict[str, Any]], plot: Path | None) -> int:
    from metareward.compare.iteration_report import markdown_table, plot_iterations

    runs = {
        label: json.loads(path.read_text(encoding="utf-8")).get("iterations") or []
        for label, path in zip(run_labels(rows), summaries)
    }
    print(markdown_table(runs))
    if plot is not None:
        plotted = plot_iterations(runs, plot)
        print(f"plot: {plot}" if plotted else "plot: no run has an evaluated iteration; nothing drawn")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metareward.compare", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="multirun directories, run directories or summary.json files")
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=None,
        help="default: those of "
        + ", ".join(DEFAULT_METRICS)
        + " that some run has; any dotted name from a summary iteration, e.g. stats.judge/mean_score",
    )
    parser.add_argument("--plot", type=Path, help="also save a bar chart per metric to this PNG file")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.add_argument(
        "--per-iteration",
        action="store_true",
        help="one row per iteration of every run (objective, win rates, length, judge, meta-judge, with intervals)",
    )
    args = parser.parse_args(argv)
    summaries = find_summaries(args.paths)
    if not summaries:
        print(
            f"error: no summary.json under {', '.join(args.paths)}; pass a multirun or run directory", file=sys.stderr
        )
        return 2
    rows = [run_row(path) for path in summaries]
    if args.per_iteration:
        return print_iterations(summaries, rows, args.plot)
    if args.metrics is None:
        args.metrics = [m for m in DEFAULT_METRICS if any(row.get(m) is not None for row in rows)]
    print(json.dumps(rows, indent=2) if args.json else format_table(rows, args.metrics))
    if args.plot is not None:
        plotted = plot_runs(rows, args.metrics, args.plot)
        print(f"plot: {args.plot}" if plotted else "plot: none of the metrics has a value; nothing drawn")
    return 0
