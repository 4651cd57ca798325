"""Iteration 0: train the judge adapter on EFT and the actor adapter on IFT before the first self-rewarding round.

In `split` adapter mode the `actor` adapter learns from IFT and the `judge` adapter (judge + meta-judge) from EFT.
In `shared` mode both sets go, shuffled together, to the one `policy` adapter, as the papers fine-tune one model
on IFT + EFT (Yuan et al. 2024, arXiv 2401.10020, Sec. 3.1). Either file may be left out (null).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from metareward.core.prompts import ADDITIVE_FIVE_POINT, JudgePrompt
from metareward.model.adapters import RoleAdapters, SavedAdapterError
from metareward.schema.rules import COUNT, FLAG, Group, Value, field_problems, read, setting
from metareward.sft.collate import SFTCollator
from metareward.sft.formatting import SFTData, SFTExample, load_sft_file
from metareward.sft.train import SFTOptim, train_adapter

ROLE_FOR_KIND = {"ift": "actor", "eft": "judge"}
log = logging.getLogger(__name__)


def optional_path(value: Any) -> str | None:
    """A file that may be left out (null or empty)."""
    return None if value in (None, "") else str(value)


@dataclass(frozen=True)
class WarmStartSettings:
    """What `conf/warm_start/*.yaml` holds; paths may be None to skip that kind of data."""

    enabled: bool = setting("enabled", FLAG, default=False)
    ift_path: str | None = setting("ift_path", Value(optional_path), default=None)
    eft_path: str | None = setting("eft_path", Value(optional_path), default=None)
    optim: SFTOptim = setting("", Group(SFTOptim), default_factory=SFTOptim)
    max_prompt_tokens: int = setting("max_prompt_tokens", COUNT, default=768)
    max_completion_tokens: int = setting("max_completion_tokens", COUNT, default=256)

    def problems(self) -> list[str]:
        """The rule that ties two settings together (each field's own rule is stated beside it)."""
        if self.enabled and self.ift_path is None and self.eft_path is None:
            return ["warm_start.enabled=true needs warm_start.ift_path or warm_start.eft_path (or both)"]
        return []


def warm_start_settings(section: Mapping[str, Any] | None, seed: int = 0) -> WarmStartSettings:
    """Typed settings from the `warm_start` config section (a DictConfig or dict; a missing key keeps its default);
    None gives the disabled default. Raises ValueError naming every value of the wrong type or out of range."""
    if section is None:
        return WarmStartSettings()
    settings, problems = read(WarmStartSettings, section, "warm_start")
    if problems:
        raise ValueError("invalid warm_start settings: " + "; ".join(problems) + ".")
    return replace(settings, optim=replace(settings.optim, seed=seed))


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
    problems = field_problems(settings, "warm_start") + settings.problems()
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


def start_from_warm_m0(
    adapters: RoleAdapters,
    tokenizer: PreTrainedTokenizerBase,
    settings: WarmStartSettings,
    folder: Path,
    judge_prompt: JudgePrompt = ADDITIVE_FIVE_POINT,
    write: bool = True,
) -> dict[str, Any]:
    """Iteration 0 of a warm-started run: M0, the model the loop starts from, is the warm-started one. The warm
    start trains it and `folder` keeps it (each adapter's folder written whole, by the process that `write`s), or,
    when an earlier attempt of this run saved it there, it is loaded and nothing trains. Either way the adapters (or
    full fine-tuning's weights) hold M0 on return, frozen as the seed model (`freeze_seed`). Returns the warm
    start's statistics, or {} when M0 was loaded."""
    if all((folder / name).is_dir() for name in adapters.adapter_names):
        try:
            adapters.load(folder)
        except SavedAdapterError as error:
            raise SavedAdapterError(f"{error}; remove {folder} to run the warm start again") from None
        adapters.freeze_seed()
        log.info("M0: the warm-started weights saved in %s (the warm start is not run again)", folder)
        return {}
    stats = warm_start(adapters, tokenizer, settings, judge_prompt)
    adapters.freeze_seed()
    if write:
        named = adapters.model.named_parameters()
        adapters.save(folder, {n: p.detach().cpu() for n, p in named if adapters.is_trained(n)}, tokenizer)
        log.info("M0: the warm-started weights, saved in %s", folder)
    return stats
