"""Starting, resuming and refusing runs: the run directory's config snapshot and checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from metareward.artifacts import write_text_atomic
from metareward.config import ConfigError

SNAPSHOT = "run_config.yaml"
CHECKPOINT = Path("checkpoints") / "last.ckpt"  # a file, or under trainer=deepspeed a folder
# Keys that may change between an interrupted attempt and its resumption.
VOLATILE = ("resume", "progress", "trainer.enable_progress_bar")


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flat(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: data}


def _comparable(cfg: DictConfig) -> dict[str, Any]:
    flat = _flat(OmegaConf.to_container(cfg, resolve=True))
    return {k: v for k, v in flat.items() if not any(k == key or k.startswith(key + ".") for key in VOLATILE)}


def is_launched_worker() -> bool:
    """True in the extra processes a multi-process strategy starts (they re-run the entry point)."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def prepare_run_dir(cfg: DictConfig, run_dir: Path, resume: bool) -> Path | None:
    """Check the run directory against `resume`; returns the checkpoint to resume from, if any.

    A new run writes its resolved config as `run_config.yaml`; a resumed run must match it. A directory counts
    as holding a run once training started in it (summary.json exists), so a start that failed early can simply
    be retried. Worker processes of
    a multi-process run leave the checks to rank 0, whose snapshot they would otherwise mistake for an old run.
    """
    snapshot = run_dir / SNAPSHOT
    if is_launched_worker():
        checkpoint = run_dir / CHECKPOINT
        return checkpoint if resume and checkpoint.exists() else None
    if not resume:
        if (run_dir / "summary.json").exists():
            raise ConfigError(
                f"{run_dir} already holds a run; continue it with resume=true or choose another hydra.run.dir"
            )
        write_text_atomic(snapshot, OmegaConf.to_yaml(cfg, resolve=True))
        return None
    if not snapshot.is_file():
        raise ConfigError(f"resume=true but {run_dir} holds no run to resume; set hydra.run.dir to an earlier run")
    saved, current = _comparable(OmegaConf.load(snapshot)), _comparable(cfg)
    changed = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
    if changed:
        shown = ", ".join(f"{k} (was {saved.get(k)!r}, now {current.get(k)!r})" for k in changed[:5])
        raise ConfigError(f"resume=true but the config differs from the run's: {shown}; resume with the same settings")
    checkpoint = run_dir / CHECKPOINT
    return checkpoint if checkpoint.exists() else None
