"""Iteration 0: train the judge adapter on EFT and the actor adapter on IFT before the first self-rewarding round.

In `split` adapter mode the `actor` adapter learns from IFT and the `judge` adapter (judge + meta-judge) from EFT.
In `shared` mode both sets go, shuffled together, to the one `policy` adapter, as the papers fine-tune one model
on IFT + EFT (Yuan et al. 2024, arXiv 2401.10020, Sec. 3.1). Either file may be left out (null).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from transformers import PreTrainedTokenizerBase

from metareward.core.prompts import ADDITIVE_FIVE_POINT, JudgePrompt
from metareward.model.adapters import RoleAdapters
from metareward.sft.collate import SFTCollator
from metareward.sft.formatting import SFTData, SFTExample, load_sft_file
from metareward.sft.train import SFTOptim, train_adapter

ROLE_FOR_KIND = {"ift": "actor", "eft": "judge"}


@dataclass(frozen=True)
class WarmStartSettings:
    """What `conf/warm_start/*.yaml` holds; paths may be None to skip that kind of data."""

    enabled: bool = False
    ift_path: str | None = None
    eft_path: str | None = None
    optim: SFTOptim = field(default_factory=SFTOptim)
    max_prompt_tokens: int = 768
    max_completion_tokens: int = 256

    def problems(self) -> list[str]:
        found = []
        if self.enabled and self.ift_path is None and self.eft_path is None:
            found.append("warm_start.enabled=true needs warm_start.ift_path or warm_start.eft_path (or both)")
        if self.optim.epochs < 1 or self.optim.batch_size < 1:
            found.append("warm_start.epochs and warm_start.batch_size must be at least 1")
        if not self.optim.lr > 0:
            found.append(f"warm_start.lr={self.optim.lr} must be > 0")
        if self.optim.max_steps is not None and self.optim.max_steps < 1:
            found.append(f"warm_start.max_steps={self.optim.max_steps} must be at least 1 (or null)")
        return found


def warm_start_settings(section: Mapping[str, Any] | None, seed: int = 0) -> WarmStartSettings:
    """Typed settings from the `warm_start` config section (a DictConfig or dict); None gives the disabled default."""
    if section is None:
        return WarmStartSettings()
    optional = lambda value: None if value in (None, "") else str(value)
    max_steps = section.get("max_steps")
    return WarmStartSettings(
        enabled=bool(section.get("enabled", False)),
        ift_path=optional(section.get("ift_path")),
        eft_path=optional(section.get("eft_path")),
        optim=SFTOptim(
            epochs=int(section.get("epochs", 1)),
            lr=float(section.get("lr", 1e-4)),
            batch_size=int(section.get("batch_size", 4)),
            weight_decay=float(section.get("weight_decay", 0.0)),
            max_grad_norm=float(section.get("max_grad_norm", 1.0)),
            max_steps=None if max_steps is None else int(max_steps),
            seed=seed,
        ),
        max_prompt_tokens=int(section.get("max_prompt_tokens", 768)),
        max_completion_tokens=int(section.get("max_completion_tokens", 256)),
    )


def load_warm_start_data(
    settings: WarmStartSettings, judge_prompt: JudgePrompt = ADDITIVE_FIVE_POINT
) -> dict[str, SFTData]:
    """The IFT and EFT files that are set, loaded and checked (raises SFTDataError before any training); EFT rows
    become the run's judge prompts (`judge_prompt`)."""
    paths = {"ift": settings.ift_path, "eft": settings.eft_path}
    return {kind: load_sft_file(path, kind, judge_prompt) for kind, path in paths.items() if path is not None}


def fitting_examples(data: SFTData, collator: SFTCollator) -> SFTData:
    """The examples that fit the token limits; the others are dropped and counted by reason, never cut."""
    kept, drops = [], Counter(data.drops)
    for example in data.examples:
        reason = collator.oversize(example)
        if reason:
            drops[reason] += 1
        else:
            kept.append(example)
    return replace(data, examples=kept, drops=dict(drops))


def warm_start(
    adapters: RoleAdapters,
    tokenizer: PreTrainedTokenizerBase,
    settings: WarmStartSettings,
    judge_prompt: JudgePrompt = ADDITIVE_FIVE_POINT,
) -> dict[str, Any]:
    """SFT of the role adapters on IFT/EFT; returns statistics for summary.json (empty dict when disabled).

    Stats: `{"seconds", "data": {kind: {"examples", "drops"}}, "adapters": {adapter: {"examples", "steps",
    "first_loss", "last_loss", "last_epoch_loss", "seconds"}}}`.
    """
    if not settings.enabled:
        return {}
    problems = settings.problems()
    if problems:
        raise ValueError("invalid warm_start settings: " + "; ".join(problems) + ".")
    started = time.perf_counter()
    data = load_warm_start_data(settings, judge_prompt)
    collator = SFTCollator(tokenizer, settings.max_prompt_tokens, settings.max_completion_tokens)
    data = {kind: fitting_examples(loaded, collator) for kind, loaded in data.items()}
    by_adapter: dict[str, tuple[str, list[SFTExample]]] = {}
    for kind, loaded in data.items():
        role = ROLE_FOR_KIND[kind]
        name = adapters.adapter_for_role[role]
        by_adapter.setdefault(name, (role, []))[1].extend(loaded.examples)
    trained = {
        name: train_adapter(adapters, role, examples, collator, settings.optim)
        for name, (role, examples) in by_adapter.items()
        if examples  # every example dropped as too long: that adapter is not trained
    }
    adapters.activate("actor")
    return {
        "seconds": time.perf_counter() - started,
        "data": {kind: {"examples": len(d.examples), "drops": d.drops} for kind, d in data.items()},
        "adapters": trained,
    }
