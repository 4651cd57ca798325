"""LoRA adapters over one set of shared base weights, one adapter per role group.

`split` mode (the default) keeps two adapters: `actor` answers instructions and is trained on actor pairs;
`judge` judges and meta-judges and is trained on judge pairs. `shared` mode keeps one adapter, `policy`, for every
role, as in the papers (one model plays all roles). Only adapter parameters train here; `model.finetune=full`
(full_weights.py) trains every weight instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.helpers import disable_input_dtype_casting
from transformers import PreTrainedModel

from metareward.schema.rules import COUNT, Choice, Number, Texts, setting
from metareward.storage.artifacts import ArtifactError, write_folder_atomic

ADAPTERS_BY_MODE = {
    "split": {"actor": "actor", "judge": "judge", "meta_judge": "judge"},
    "shared": {"actor": "policy", "judge": "policy", "meta_judge": "policy"},
}
PAIR_KIND_ROLE = {"actor": "actor", "judge": "judge"}
FSDP_PREFIX = "_fsdp_wrapped_module."  # what FSDP's wrappers put into the names of the parameters they hold
COMPUTE_DTYPES = ("weights", "float32")  # model.adapters.compute_dtype: see RoleAdapters.compute_context


@dataclass(frozen=True)
class AdapterSpec:
    """The `model.adapters` group: LoRA's rank `r`, scale `alpha` (the update is scaled by alpha / r) and dropout."""

    mode: str = setting("mode", Choice(tuple(sorted(ADAPTERS_BY_MODE))), default="split")
    r: int = setting("r", COUNT, default=16)
    alpha: int = setting("alpha", COUNT, default=32)
    dropout: float = setting("dropout", Number(float, 0, 1, high_open=True), default=0.0)
    target_modules: tuple[str, ...] = setting(
        "target_modules", Texts("q_proj, v_proj"), default=("q_proj", "k_proj", "v_proj", "o_proj")
    )
    # What the adapters compute in during DPO and its reference pass over bfloat16 base weights: `weights`
    # (bfloat16, float32 master weights) or `float32` (as PEFT does by itself). See RoleAdapters.compute_context.
    compute_dtype: str = setting("compute_dtype", Choice(COMPUTE_DTYPES), default="weights")

    def lora_config(self) -> LoraConfig:
        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            task_type="CAUSAL_LM",
        )


def target_problems(model: torch.nn.Module, spec: AdapterSpec) -> list[str]:
    """What keeps `spec` from fitting `model`, checked right after it loads (PEFT would stop in a traceback, or, for
    some names only, quietly adapt fewer layers): target module names the model lacks, and a rank above the
    smallest dimension of a targeted layer (no longer a low-rank update)."""
    linear = {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    names = {name.rsplit(".", 1)[-1] for name in linear}
    missing = [target for target in spec.target_modules if target not in names]
    if missing:
        kind = type(model).__name__
        return [
            f"model.adapters.target_modules names {missing}, which {kind} lacks; its linear layers are {sorted(names)}"
        ]
    targeted = [m for n, m in linear.items() if n.rsplit(".", 1)[-1] in spec.target_modules]
    smallest = min(min(m.in_features, m.out_features) for m in targeted)
    if spec.r > smallest:
        return [f"model.adapters.r={spec.r} exceeds {smallest}, the smallest dimension of a targeted layer; lower it"]
    return []


class RoleAdapters:
    """A PEFT model with one LoRA adapter per role group, and a switch that activates the right one."""

    def __init__(self, base_model: PreTrainedModel, spec: AdapterSpec) -> None:
        self.spec = spec
        self.adapter_for_role = ADAPTERS_BY_MODE[spec.mode]
        names = list(dict.fromkeys(self.adapter_for_role.values()))
        config = spec.lora_config()
        self.model: PeftModel = get_peft_model(base_model, config, adapter_name=names[0])
        for name in names[1:]:
            self.model.add_adapter(name, config)
        self.adapter_names = tuple(names)
        self.model.set_adapter(names[0])
        for parameter in self.adapter_parameters():
            parameter.requires_grad_(True)
        # M0's adapter weights in host memory once a warm start trained them (freeze_seed); None: M0 is the base
        # model with every adapter off.
        self.seed_tensors: dict[str, torch.Tensor] | None = None

    def activate(self, role: str) -> str:
        """Make `role`'s adapter the active one; returns the adapter's name.

        Every adapter stays `requires_grad`: an inactive adapter takes no part in the forward pass, so it gets no
        gradient anyway, and DDP must see all adapter parameters as trainable from the start (PEFT's
        set_adapter would freeze the inactive ones, and DDP would then never synchronise them).
        """
        name = self.adapter_for_role[role]
        self._switch(name)
        return name

    def _switch(self, name: str) -> None:
        if self.model.active_adapter != name:
            self.model.set_adapter(name)
            for parameter in self.adapter_parameters():
                parameter.requires_grad_(True)

    @contextmanager
    def role(self, role: str) -> Iterator[PeftModel]:
        previous = self.model.active_adapter
        self.activate(role)
        try:
            yield self.model
        finally:
            self._switch(previous)

    def compute_context(self) -> AbstractContextManager[object]:
        """What the DPO step's forward pass and its reference pass run in (the same for both, so that DPO's implicit
        rewards are 0 before the first update), and the warm start's SFT steps.

        With bfloat16 base weights PEFT keeps the adapters in float32 and casts each adapter's input to float32:
        casts, two float32 products and a float32 sum for each adapted projection. With `compute_dtype=weights`
        (1.13 times as fast on the work of `bench dpo`, 2-core Xeon with AMX) the pass runs under autocast
        to bfloat16 with PEFT's input cast off: the adapters compute in bfloat16 from their float32 weights, and
        their gradients and the optimizer state stay float32, as under Lightning's `bf16-mixed`. float16 weights
        are left alone (their gradients would need a loss scaler), as is `compute_dtype=float32`.
        """
        base = self.model.get_base_model()
        if self.spec.compute_dtype != "weights" or base.dtype != torch.bfloat16:
            return nullcontext()
        return _bfloat16_adapters(self.model, next(base.parameters()).device.type)

    def adapter_parameters(self) -> list[torch.nn.Parameter]:
        """Every LoRA parameter of every adapter (inactive ones included: the optimizer must know them all)."""
        return [parameter for name, parameter in self.model.named_parameters() if self.is_trained(name)]

    def role_tensors(self, role: str, device: str | torch.device | None = None) -> dict[str, torch.Tensor]:
        """A copy of the weights of `role`'s adapter, named as in the PEFT model (`...lora_A.judge.weight`), on
        `device` (None: where each weight is)."""
        return {n: copied(p, device) for n, p in lora_parameters(self.model, self.adapter_for_role[role]).items()}

    @contextmanager
    def role_tensors_lent(self, role: str, tensors: Mapping[str, torch.Tensor]) -> Iterator[None]:
        """`role`'s adapter holds `tensors` (from `role_tensors`, maybe of an earlier iteration) until the block
        ends; then its own weights are back."""
        with lend_tensors(self.model, self.role_tensors(role, "cpu"), tensors, f"{role} adapter"):
            yield

    def freeze_seed(self) -> None:
        """Make the adapters as they are now M0, the model the loop starts from (after a warm start): a copy of
        every adapter's weights in host memory, lent to the seed roles from then on."""
        named = self.model.named_parameters()
        self.seed_tensors = {plain_name(n): copied(p, "cpu") for n, p in named if self.is_trained(n)}

    @contextmanager
    def seed(self, face: str = "actor") -> Iterator[PeftModel]:
        """The seed model M0 as `face` (actor or judge) until the block ends: the base model with every adapter
        disabled, or after `freeze_seed` that role's adapter holding M0's weights."""
        if self.seed_tensors is None:
            with self.model.disable_adapter():
                yield self.model
            return
        names = lora_parameters(self.model, self.adapter_for_role[face])
        own = {n: self.seed_tensors[plain_name(n)] for n in names}  # named as now (FSDP may have wrapped the model)
        with self.role_tensors_lent(face, own), self.role(face) as model:
            yield model

    def load(self, folder: Path) -> None:
        """Every adapter from `folder/<adapter>/` as `save` wrote it (`load_adapter` checks each)."""
        for name in self.adapter_names:
            load_adapter(self, name, Path(folder) / name)

    @staticmethod
    def is_trained(name: str) -> bool:
        """Whether the parameter (or state-dict entry) `name` trains: LoRA tensors only."""
        return "lora_" in name

    def trained_parameters(self) -> list[torch.nn.Parameter]:
        return self.adapter_parameters()

    def fingerprint(self) -> torch.Tensor:
        """Per-tensor sums of the frozen base weights; any change to a base weight changes it."""
        with torch.no_grad():
            return torch.stack([p.detach().double().sum() for _, p in self.base_parameters()]).cpu()

    def weight_record(self, fingerprint: torch.Tensor | None, plain: Any = None) -> dict[str, Any]:
        """Each adapter's L2 norm of its LoRA B matrices (zero at the start, so > 0 means trained), and whether the
        base weights still match `fingerprint` (taken when training started)."""
        norms: dict[str, float] = {}
        for name, parameter in self.model.named_parameters():
            for adapter in self.adapter_names:
                if f"lora_B.{adapter}." in name:
                    norms[adapter] = norms.get(adapter, 0.0) + float(parameter.detach().double().pow(2).sum())
        unchanged = fingerprint is not None and bool(torch.equal(self.fingerprint(), fingerprint))
        return {"adapter_norms": {a: math.sqrt(t) for a, t in norms.items()}, "base_unchanged": unchanged}

    def base_parameters(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        return ((name, p) for name, p in self.model.named_parameters() if "lora_" not in name)

    def save(self, directory: Path, tensors: Mapping[str, torch.Tensor], tokenizer: Any = None) -> None:
        """Each adapter in PEFT's format (`<directory>/<adapter>/adapter_config.json`, `adapter_model.safetensors`)
        from `tensors`, LoRA tensors named as in the PEFT model (`...q_proj.lora_A.actor.weight`).

        PEFT's save_pretrained finds an adapter's tensors through the model's module names, which under FSDP carry
        wrapper prefixes; the tensors given here are named and gathered by the caller. (`tokenizer` is for full
        fine-tuning's whole-model folders; an adapter folder needs none.)
        """
        from safetensors.torch import save_file

        for name in self.adapter_names:
            marker = f".{name}."
            own = {key.replace(marker, "."): t.contiguous() for key, t in tensors.items() if marker in key}

            def fill(target: Path, name: str = name, own: dict[str, torch.Tensor] = own) -> None:
                self.model.peft_config[name].save_pretrained(str(target))
                save_file(own, str(target / "adapter_model.safetensors"), metadata={"format": "pt"})

            write_folder_atomic(Path(directory) / name, fill)


@contextmanager
def _bfloat16_adapters(model: PeftModel, device_type: str) -> Iterator[None]:
    with torch.autocast(device_type, dtype=torch.bfloat16), disable_input_dtype_casting(model):
        yield


def lora_parameters(model: torch.nn.Module, adapter: str) -> dict[str, torch.nn.Parameter]:
    """The LoRA parameters of one adapter, named as in the PEFT model (`...q_proj.lora_A.<adapter>.weight`)."""
    marker = f".{adapter}."
    return {name: p for name, p in model.named_parameters() if "lora_" in name and marker in name}


def plain_name(name: str) -> str:
    """A parameter name without FSDP's wrapper prefixes: the name the same parameter has in the PEFT model."""
    return name.replace(FSDP_PREFIX, "")


def copied(parameter: torch.Tensor, device: str | torch.device | None) -> torch.Tensor:
    """A detached copy of `parameter` on `device` (None: its own), made in one step."""
    return parameter.detach().to(parameter.device if device is None else device, copy=True)


@contextmanager
def lend_tensors(
    model: torch.nn.Module, current: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor], what: str
) -> Iterator[None]:
    """The parameters named in `current` hold `tensors` until the block ends, then `current` again (either may sit
    on another device than the parameters: the copies cross it). Refuses tensors that do not match by name and shape
    (saved by a run with other model settings)."""
    own = dict(model.named_parameters())
    if set(tensors) != set(current) or any(tensors[n].shape != current[n].shape for n in current):
        raise ValueError(
            f"the saved weights of the {what} do not match it ({len(tensors)} tensors for {len(current)}): "
            "were they saved by a run with other model settings?"
        )
    with torch.no_grad():
        for name, tensor in tensors.items():
            own[name].copy_(tensor)
    try:
        yield
    finally:
        with torch.no_grad():
            for name, tensor in current.items():
                own[name].copy_(tensor)


class SavedAdapterError(ArtifactError):
    """Saved weights (an adapter, or a whole model) that do not read back or do not fit the model they load into."""


def load_adapter(adapters: RoleAdapters, name: str, folder: Path) -> None:
    """Copy a saved adapter (`<folder>/adapter_model.safetensors`, PEFT names without the adapter name, as
    `RoleAdapters.save` writes them) into adapter `name`, refused if it was saved with other LoRA settings."""
    targets = {key.replace(f".{name}.", "."): p for key, p in lora_parameters(adapters.model, name).items()}
    files = [folder / "adapter_model.safetensors"]
    load_saved_tensors(files, targets, targets, f"the adapter {folder}", "the model.adapters settings")


def load_saved_tensors(
    files: Sequence[Path], targets: Mapping[str, torch.Tensor], required: Iterable[str], what: str, fits: str
) -> None:
    """Copy the tensors saved in `files` onto `targets` (name -> parameter). Every saved tensor must land on a target
    of the same shape and every name in `required` must be saved, so weights saved with other settings are refused
    instead of half-loaded; `what` names the saved weights and `fits` what they must fit, in the error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        saved = {key: tensor for file in files for key, tensor in load_file(str(file)).items()}
    except (SafetensorError, OSError) as error:
        raise SavedAdapterError(f"{what} does not read back ({type(error).__name__})") from None
    unknown = sorted(set(saved) - set(targets))
    missing = sorted(set(required) - set(saved))
    wrong = sorted(k for k in set(saved) & set(targets) if saved[k].shape != targets[k].shape)
    if unknown or missing or wrong:
        first = (unknown or missing or wrong)[0]
        raise SavedAdapterError(
            f"{what} does not fit {fits} ({len(unknown)} unknown, {len(missing)} missing, {len(wrong)} differently "
            f"shaped tensors, e.g. {first})"
        )
    with torch.no_grad():
        for key, tensor in saved.items():
            targets[key].copy_(tensor.to(dtype=targets[key].dtype, device=targets[key].device))
