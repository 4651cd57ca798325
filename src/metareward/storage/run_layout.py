"""Where a run keeps what it writes, relative to its run directory: named once, read by every layer."""

from pathlib import Path

SNAPSHOT = "run_config.yaml"  # the resolved config a resumed run must match
CHECKPOINT = Path("checkpoints") / "last.ckpt"  # a file, or under trainer=deepspeed a folder


def iteration_dir(run_dir: Path, iteration: int) -> Path:
    """Where iteration t's stage files, pairs and statistics are kept."""
    return run_dir / "iterations" / f"iter_{iteration:02d}"
