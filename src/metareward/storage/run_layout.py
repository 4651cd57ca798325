"""Where a run keeps what it writes, relative to its run directory: named once, read by every layer."""

from pathlib import Path

SNAPSHOT = "run_config.yaml"  # the resolved config a resumed run must match
CHECKPOINTS = Path("checkpoints")  # the weights saved after each iteration, unless the config puts them elsewhere
CHECKPOINT = CHECKPOINTS / "last.ckpt"  # a file, or under trainer=deepspeed a folder


def iteration_dir(run_dir: Path, iteration: int) -> Path:
    """Where iteration t's stage files, pairs and statistics are kept."""
    return run_dir / "iterations" / f"iter_{iteration:02d}"


def saved_weights_dir(checkpoints: Path, iteration: int) -> Path:
    """Where the weights saved after iteration t are kept (t = 0: M0 after a warm start), each adapter (or the whole
    model) in a folder of its own."""
    return checkpoints / f"iter_{iteration:02d}"
