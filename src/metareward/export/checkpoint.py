"""A finished (or partly finished) run directory as a model to answer with: the run's config snapshot, the adapters
saved after each iteration, and the policy of iteration T.

Iteration 0 is M0, the model the loop started from: the weights a warm start left (saved by the run as
`checkpoints/iter_00/`), or without a warm start the base weights with every adapter off (role `seed`); iteration
T >= 1 is the actor adapter saved by `AdapterCheckpoint` after iteration T (`checkpoints/iter_TT/<adapter>/`, PEFT
format) on the base model named by `run_config.yaml`, or, for a run with `model.finetune=full`, the whole model
saved there (`checkpoints/iter_TT/policy/`, Hugging Face format). Every check here reads files only, so it runs before any model
loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from metareward.model.adapters import ADAPTERS_BY_MODE, AdapterSpec
from metareward.model.loading import ModelSpec
from metareward.schema.rules import read
from metareward.storage.run_layout import CHECKPOINTS, SNAPSHOT, saved_weights_dir

if TYPE_CHECKING:
    from metareward.generation.policy import FixedModel, Policy
    from metareward.model.adapters import RoleAdapters

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


class RunDirError(ValueError):
    """The run directory, or the iteration asked for, cannot be exported; the message names what exists."""


@dataclass(frozen=True)
class SavedRun:
    """A run directory of train.py and its resolved config (`run_config.yaml`)."""

    run_dir: Path
    cfg: DictConfig

    @property
    def experiment(self) -> str:
        return str(self.cfg.get("experiment", "run"))

    def model(self) -> ModelSpec:
        return self._group(ModelSpec, "model")

    def adapters(self) -> AdapterSpec:
        return self._group(AdapterSpec, "model.adapters")

    def _group(self, cls: type, key: str) -> Any:
        """A group of the run's config, read by the rules of its settings (as the run read it)."""
        settings, problems = read(cls, OmegaConf.select(self.cfg, key), key)
        if problems:
            raise RunDirError(f"the run's config snapshot cannot be used: {'; '.join(problems)}")
        return settings

    def full(self) -> bool:
        """Whether the run trained every weight (`model.finetune=full`) rather than LoRA adapters."""
        return str(OmegaConf.select(self.cfg, "model.finetune", default="lora")) == "full"

    def actor_adapter(self) -> str:
        """The adapter the actor role uses (`actor` in split mode, `policy` in shared mode and in full runs)."""
        if self.full():
            return ADAPTERS_BY_MODE["shared"]["actor"]
        return ADAPTERS_BY_MODE.get(str(self.cfg.model.adapters.mode), ADAPTERS_BY_MODE["split"])["actor"]

    def checkpoints_dir(self) -> Path:
        """The run's adapter folder: `<run>/checkpoints`, else where the run's config put it (a moved run keeps
        its folder beside it; a configured one elsewhere is found through the snapshot)."""
        beside = self.run_dir / CHECKPOINTS
        configured = OmegaConf.select(self.cfg, "callbacks.adapter_checkpoint.directory", default=None)
        return beside if beside.is_dir() or not configured else Path(str(configured))

    def adapter_folder(self, iteration: int) -> Path:
        return saved_weights_dir(self.checkpoints_dir(), iteration) / self.actor_adapter()

    def saved_iterations(self) -> list[int]:
        """Iterations whose actor adapter folder holds a config and weights."""
        found = []
        for folder in sorted(self.checkpoints_dir().glob(f"iter_*/{self.actor_adapter()}")):
            number = folder.parent.name.removeprefix("iter_")
            whole = (folder / "config.json").is_file() and any(folder.glob("model*.safetensors"))
            saved = whole if self.full() else all((folder / name).is_file() for name in ADAPTER_FILES)
            if number.isdigit() and saved:
                found.append(int(number))
        return sorted(found)

    def evaluation(self, key: str, default: Any) -> Any:
        """A value of the run's `evaluation` group (the defaults of an export: max_new_tokens, batch_size, ...)."""
        return OmegaConf.select(self.cfg, f"evaluation.{key}", default=default)


def open_run(run_dir: str | Path) -> SavedRun:
    """The run in `run_dir`; a missing directory or config snapshot raises RunDirError naming the fix."""
    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise RunDirError(f"--run-dir={str(path)!r} is not a directory; point it at a run directory of train.py")
    snapshot = path / SNAPSHOT
    if not snapshot.is_file():
        raise RunDirError(
            f"--run-dir={str(path)!r} holds no {SNAPSHOT}, so it is not a run of train.py (or training never "
            "started there); point it at outputs/runs/<experiment>/<date_time>"
        )
    try:
        cfg = OmegaConf.load(snapshot)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, OmegaConfBaseException) as error:
        raise RunDirError(f"the run's config snapshot {snapshot} is damaged ({type(error).__name__})") from None
    if not isinstance(cfg, DictConfig) or "model" not in cfg:
        raise RunDirError(f"the run's config snapshot {snapshot} names no model; it is not a run_config.yaml")
    return SavedRun(path, cfg)


def iteration_problem(run: SavedRun, iteration: int) -> str | None:
    """Why `iteration` cannot be exported from `run`, naming the iterations that can, or None."""
    saved = run.saved_iterations()
    shown = ", ".join(str(i) for i in saved) if saved else "none yet"
    if iteration < 0:
        return f"--iteration={iteration} must be 0 (the seed model M0) or a trained iteration ({shown})"
    if iteration == 0 or iteration in saved:
        return None
    return (
        f"--iteration={iteration} has no saved adapters ({run.adapter_folder(iteration)} is missing or incomplete); "
        f"iterations with saved adapters: {shown}"
    )


def load_policy(
    run: SavedRun, iteration: int, max_prompt_tokens: int, progress: bool = True
) -> tuple[Policy, RoleAdapters | FixedModel]:
    """The run's base model with LoRA adapters, the actor adapter loaded from iteration `iteration` (at 0 without a
    warm start the adapters stay fresh and are switched off by the `seed` role), as the in-process generation
    backend. A full run's iteration is the whole model saved then (at 0 without a warm start the base model), served
    as it is to every role."""
    from dataclasses import replace

    import torch

    from metareward.generation.policy import FixedModel, Policy
    from metareward.model.adapters import RoleAdapters
    from metareward.model.chat import stop_token_ids
    from metareward.model.loading import load_model_and_tokenizer

    spec = run.model()
    saved = iteration in run.saved_iterations()
    if run.full() and saved:
        spec = replace(spec, path=str(run.adapter_folder(iteration)))
    model, tokenizer = load_model_and_tokenizer(spec)
    if torch.cuda.is_available() and not spec.quantization:  # quantized weights are placed on the GPU by loading
        model = model.to("cuda")
    if run.full():
        switch = FixedModel(model.eval())
        stops = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
        return Policy(switch, tokenizer, max_prompt_tokens, progress, stops), switch
    adapters = RoleAdapters(model, run.adapters())
    if saved:
        load_adapter_weights(adapters, run.actor_adapter(), run.adapter_folder(iteration))
    adapters.model.eval()
    stops = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
    return Policy(adapters, tokenizer, max_prompt_tokens, progress, stops), adapters


def load_adapter_weights(adapters: RoleAdapters, name: str, folder: Path) -> None:
    """The saved adapter in `folder` loaded into adapter `name`; one that does not read back or does not fit the
    run's LoRA settings raises RunDirError."""
    from metareward.model.adapters import SavedAdapterError, load_adapter

    try:
        load_adapter(adapters, name, folder)
    except SavedAdapterError as error:
        raise RunDirError(f"{error}; export with the run_config.yaml it was trained with") from None
