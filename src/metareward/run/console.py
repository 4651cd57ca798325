"""What a run prints: its own lines in one format, its figures rounded, a table at the end, and where everything
went; none of the libraries' noise a user cannot act on.

Kept off the console: Lightning's second copy of each of its lines (its own handler beside the run's), its
advertisements ("Tip: ... try installing litlogger"), wandb's banner (the closing lines say where the wandb run is
and how to upload it), and the deprecation notices libraries raise about their OWN calls of another library's
renamed API, which no setting of ours changes. Our own calls are held to the current APIs by the tests
(tests/deprecations.py), which see every notice.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from metareward.compare.run_report import results_table
from metareward.model.compat import hide_library_internal_deprecations

ADVERTISEMENT = "Tip:"


def _not_an_advertisement(record: logging.LogRecord) -> bool:
    return ADVERTISEMENT not in record.getMessage()


def quiet_libraries() -> None:
    """One format for every line (Lightning's go through the run's handler only), no advertisements, no wandb
    banner (unless WANDB_SILENT is set otherwise), no library-internal deprecations."""
    import lightning  # its import adds the handler removed here

    hide_library_internal_deprecations()
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        library = logging.getLogger(name)
        for handler in list(library.handlers):
            library.removeHandler(handler)
        library.propagate = True
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_not_an_advertisement)
    os.environ.setdefault("WANDB_SILENT", "true")
    del lightning


def closing_report(run_dir: Path) -> str:
    """The results table of a finished run and where its files are: run directory, summary, plots, wandb run."""
    summary_path = run_dir / "summary.json"
    lines = []
    try:
        iterations = json.loads(summary_path.read_text(encoding="utf-8")).get("iterations") or []
    except (OSError, ValueError):
        iterations = []
    if iterations:
        lines += [results_table(iterations), ""]
    lines += [f"run directory: {run_dir}", f"summary: {summary_path}"]
    plots = run_dir / "plots"
    if plots.is_dir() and any(plots.iterdir()):
        lines.append(f"plots: {plots}")
    lines += wandb_lines(run_dir)
    return "\n".join(lines)


def wandb_lines(run_dir: Path) -> list[str]:
    """Where the run's wandb run is, and for an offline one the command that uploads it."""
    runs = sorted((run_dir / "wandb").glob("*run-*"))
    if not runs:
        return []
    latest = runs[-1]
    if latest.name.startswith("offline-run-"):
        return [f"wandb (offline): {latest}; upload it with: wandb sync {latest}"]
    return [f"wandb: {latest}"]
