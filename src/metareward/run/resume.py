"""Starting, resuming and refusing runs: the run directory's config snapshot and checkpoint."""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from metareward.config.build import ConfigError
from metareward.storage.artifacts import ArtifactError, read_json, read_json_lines, write_text_atomic
from metareward.storage.run_layout import CHECKPOINT, SNAPSHOT

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


# The variables that number a training process among its run's: the processes a strategy starts on one machine
# (LOCAL_RANK), the nodes of a multi-node run (NODE_RANK), and the tasks torchrun (RANK) and srun (SLURM_PROCID) start.
RANK_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID")


def is_launched_worker() -> bool:
    """True in every training process of a multi-process run but the first (rank 0 prepares the run directory)."""
    return any(int(os.environ.get(name) or 0) > 0 for name in RANK_VARIABLES)


def run_dir_problem(cfg: DictConfig, run_dir: Path, resume: bool) -> str | None:
    """Why the run directory does not fit `resume`, or None; reads only, so it may run before anything is written.

    A directory counts as holding a run once training started in it (summary.json exists), so a start that failed
    early can simply be retried. A resumed run must match the saved `run_config.yaml`. Worker processes of a
    multi-process run leave the checks to rank 0, whose snapshot they would otherwise mistake for an old run.
    """
    if is_launched_worker():
        return None
    snapshot = run_dir / SNAPSHOT
    if not resume:
        if (run_dir / "summary.json").exists():
            return f"{run_dir} already holds a run; continue it with resume=true or choose another hydra.run.dir"
        return None
    if not snapshot.is_file():
        return f"resume=true but {run_dir} holds no run to resume; set hydra.run.dir to an earlier run"
    try:
        saved = _comparable(OmegaConf.load(snapshot))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, OmegaConfBaseException) as error:  # truncated or edited
        return (
            f"the run's config snapshot {snapshot} is damaged ({type(error).__name__}); restore it from "
            f"{run_dir / '.hydra' / 'config.yaml'} or start a new run in another hydra.run.dir"
        )
    current = _comparable(cfg)
    changed = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
    if changed:
        shown = ", ".join(f"{k} (was {saved.get(k)!r}, now {current.get(k)!r})" for k in changed[:5])
        return f"resume=true but the config differs from the run's: {shown}; resume with the same settings"
    return checkpoint_problem(run_dir / CHECKPOINT) or adapter_problem(run_dir) or damaged_stage_problem(run_dir)


def checkpoint_problem(path: Path) -> str | None:
    """Whether the resume checkpoint is whole: torch writes a zip archive, so a truncated file has no central
    directory and a corrupted one fails a member's CRC. (A DeepSpeed checkpoint is a folder: left to DeepSpeed.)"""
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        broken = "its archive structure (truncated?)"
    if broken is None:
        return _code_problem(path)
    return (
        f"the checkpoint {path} is damaged ({broken} does not read back); delete it and resume again: the finished "
        "stage files are reused and the iterations are trained again from them, or start a new run elsewhere"
    )


def _code_problem(path: Path) -> str | None:
    """Whether the checkpoint holds anything but tensors and plain values: such a file would run code when loaded
    in full, so the run loads it only as weights (`weights_only=True`, memory-mapped here: nothing is read twice)."""
    import pickle

    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        named = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        found = f" ({named.group(1)})" if named else ""
        return (
            f"the checkpoint {path} holds objects other than tensors and plain values{found}, which this project "
            "never writes and which could run code when loaded: it was not loaded; delete it and resume again (the "
            "finished stage files are reused), or start a new run elsewhere"
        )
    return None


def adapter_problem(run_dir: Path) -> str | None:
    """Whether every saved adapter folder (checkpoints/iter_NN/<role>/, or a full run's whole-model folder) holds a
    readable config and weights."""
    for folder in sorted((run_dir / "checkpoints").glob("iter_*/*")):
        if not folder.is_dir() or folder.name.startswith("."):  # a hidden .<role>.partial is cleared on the next save
            continue
        reason = _adapter_reason(folder)
        if reason:
            return (
                f"the adapter folder {folder} is damaged ({reason}); it is a copy of that iteration's adapters for use "
                "outside the run: delete the folder and resume again (the run goes on without it)"
            )
    return None


def _adapter_reason(folder: Path) -> str | None:
    from safetensors import SafetensorError, safe_open

    whole = (folder / "config.json").is_file() and not (folder / "adapter_config.json").exists()  # finetune=full
    config_name = "config.json" if whole else "adapter_config.json"
    weight_files = sorted(folder.glob("model*.safetensors")) if whole else [folder / "adapter_model.safetensors"]
    if not weight_files:
        return "model.safetensors is missing"
    try:
        config = json.loads((folder / config_name).read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            return f"{config_name} is not a JSON object"
        for path in weight_files:
            current = path
            with safe_open(str(path), framework="pt") as weights:
                for key in weights.keys():  # noqa: SIM118 - a safetensors handle is not a mapping
                    weights.get_slice(key)
    except FileNotFoundError as error:
        return f"{Path(str(error.filename)).name} is missing"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"{config_name} is not valid JSON"
    except (SafetensorError, OSError) as error:  # a truncated or garbled weights file
        return f"{current.name} does not read back: {type(error).__name__}"
    return None


def damaged_stage_problem(run_dir: Path) -> str | None:
    """The first stage file of the run that does not parse line by line as JSON (truncated, overwritten)."""
    for path in sorted((run_dir / "iterations").glob("iter_*/*.json*")):
        try:
            if path.suffix == ".json":
                read_json(path)
            else:
                read_json_lines(path)
        except ArtifactError as error:
            where_and_why = str(error).split("; ")[0]  # the readers' own advice gives way to this one
            return (
                f"the stage file {where_and_why}; delete it and resume again to redo that stage (finished stages "
                "before it are reused)"
            )
    return None


def prepare_run_dir(cfg: DictConfig, run_dir: Path, resume: bool) -> Path | None:
    """Check the run directory against `resume` (see `run_dir_problem`); returns the checkpoint to resume from, if
    any. A new run writes its resolved config as `run_config.yaml`."""
    problem = run_dir_problem(cfg, run_dir, resume)
    if problem:
        raise ConfigError(problem)
    checkpoint = run_dir / CHECKPOINT
    if is_launched_worker():
        return checkpoint if resume and checkpoint.exists() else None
    if not resume:
        write_text_atomic(run_dir / SNAPSHOT, OmegaConf.to_yaml(cfg, resolve=True))
        return None
    return checkpoint if checkpoint.exists() else None
