"""Full fine-tuning, as both papers train: every weight of one model trains, and actor, judge and meta-judge share
it (one model plays all roles, like `model.adapters.mode=shared` for LoRA). `model.finetune=full` selects it.

The seed model M0 (role `seed`: the evaluation baseline, the frozen seed judge, anchored rejections, the export of
iteration 0) can no longer be had by switching adapters off, so a frozen copy of M0 is kept in host memory and
moved to the training device only while it is lent. It costs one more copy of the weights in host memory (2 bytes
per parameter in bf16, 4 in fp32) and the copy's transfer each time M0 is asked for; no gradients or optimizer
state. The DPO reference stays the log-probs of M_t computed when the pairs are made, so no copy is held for it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import PreTrainedModel

from metareward.model.adapters import (
    ADAPTERS_BY_MODE,
    AdapterSpec,
    RoleAdapters,
    copied,
    lend_tensors,
    load_saved_tensors,
)
from metareward.storage.artifacts import write_folder_atomic

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SHARED = ADAPTERS_BY_MODE["shared"]  # every role uses the one model, saved as `policy`


class FullWeights:
    """Every parameter of `model` trains, shared by all roles; a frozen copy of M0 stays in host memory."""

    adapter_for_role = SHARED
    adapter_names = tuple(dict.fromkeys(SHARED.values()))

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.seed_model = copy.deepcopy(model).to("cpu").eval().requires_grad_(False)
        for parameter in self.model.parameters():
            parameter.requires_grad_(True)

    def activate(self, role: str) -> str:
        return self.adapter_for_role[role]

    @contextmanager
    def role(self, role: str) -> Iterator[PreTrainedModel]:
        yield self.model

    def compute_context(self) -> AbstractContextManager[object]:
        """Weights that train compute as they are kept (see RoleAdapters.compute_context)."""
        return nullcontext()

    def freeze_seed(self) -> None:
        """Make the weights as they are now M0, the model the loop starts from (after a warm start)."""
        with torch.no_grad():
            self.seed_model.load_state_dict(self.model.state_dict())

    def load(self, folder: Path) -> None:
        """The whole model from `folder/policy/` as `save` wrote it (one or several safetensors files; an output
        head tied to the embeddings may be left out, as transformers saves it)."""
        files = sorted((Path(folder) / self.adapter_names[0]).glob("model*.safetensors"))
        own = dict(self.model.named_parameters(remove_duplicate=False))  # a tied head under either name
        required = dict(self.model.named_parameters())
        load_saved_tensors(files, own, required, f"the model saved in {folder}", "the model")

    @contextmanager
    def seed(self, face: str = "actor") -> Iterator[PreTrainedModel]:
        """M0 on the training model's device until the block ends, then back in host memory (every role, `face`
        included, shares the one model)."""
        device = next(self.model.parameters()).device
        try:
            yield self.seed_model.to(device)
        finally:
            self.seed_model.to("cpu")

    @staticmethod
    def is_trained(name: str) -> bool:
        """Every parameter trains (the name of a state-dict entry or parameter)."""
        return True

    def trained_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    def role_tensors(self, role: str, device: str | torch.device | None = None) -> dict[str, torch.Tensor]:
        """A copy of every weight (all roles share them) on `device` (None: where each weight is)."""
        return {n: copied(p, device) for n, p in self.model.named_parameters()}

    @contextmanager
    def role_tensors_lent(self, role: str, tensors: Mapping[str, torch.Tensor]) -> Iterator[None]:
        """The model holds `tensors` until the block ends; its own weights wait in host memory meanwhile."""
        with lend_tensors(self.model, self.role_tensors(role, "cpu"), tensors, role):
            yield

    def weight_record(self, fingerprint: Any = None, plain: Callable[[str], str] = str) -> dict[str, float]:
        """How far the trained weights are from M0: the L2 norm of their difference (0 before any step). `plain`
        gives a parameter's own name under a strategy's wrapper (FSDP's prefixes)."""
        seed = dict(self.seed_model.named_parameters())
        with torch.no_grad():
            pairs = [(p, seed.get(plain(n))) for n, p in self.model.named_parameters()]
            if any(s is None or s.shape != p.shape for p, s in pairs):
                raise ValueError("the trained weights are not gathered: weight_record runs under full_weights()")
            total = sum(float((p.detach().double().cpu() - s.double()).pow(2).sum()) for p, s in pairs)
        return {"distance_from_seed": total**0.5}

    def fingerprint(self) -> None:
        return None  # nothing is frozen: weight_record compares with M0 instead

    def save(
        self, directory: Path, tensors: Mapping[str, torch.Tensor], tokenizer: PreTrainedTokenizerBase | None = None
    ) -> None:
        """The whole model in Hugging Face format (`<directory>/policy/`: config.json, model.safetensors, and the
        tokenizer when given), loadable by `from_pretrained` and by vLLM; `tensors` are the gathered weights."""
        for name in self.adapter_names:

            def fill(target: Path) -> None:
                self.model.save_pretrained(str(target), state_dict=dict(tensors), safe_serialization=True)
                if tokenizer is not None:
                    tokenizer.save_pretrained(str(target))

            write_folder_atomic(Path(directory) / name, fill)


def role_weights(model: PreTrainedModel, finetune: str, adapters: AdapterSpec) -> RoleAdapters | FullWeights:
    """What trains: LoRA adapters over frozen base weights (`lora`, the default), or every weight (`full`)."""
    return FullWeights(model) if finetune == "full" else RoleAdapters(model, adapters)
