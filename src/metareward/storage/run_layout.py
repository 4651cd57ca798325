"""Where a run keeps what it writes, relative to its run directory: named once, read by every layer."""

from pathlib import Path

SNAPSHOT = "run_config.yaml"  # the resolved config a resumed run must match
CHECKPOINT = Path("checkpoints") / "last.ckpt"  # a file, or under trainer=deepspeed a folder
