"""The self-instruct stage: rounds of few-shot generation and filtering until enough new prompts are kept.

Round r sends `requests_per_round` few-shot requests; request i draws its examples and its sampling seed from
`derive_seed(seed, "self-instruct", r, i, ...)`, so a run is reproducible. Examples come from the pool as it
grows (seed prompts plus prompts kept in earlier rounds). Every candidate goes through `filter_candidates`
against the whole pool; the drops of all rounds are summed. Generation goes through a generation backend
(`engine.policy.GenerationBackend`), as the data engine's does.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from metareward.core.seeding import derive_seed
from metareward.generation.policy import GenerationBackend
from metareward.generation.sampler import GenerationRequest, RoleSettings, SamplingSettings
from metareward.model.chat import render_prompt
from metareward.selfinstruct.fewshot import answer_prefix, build_fewshot_message, choose_examples
from metareward.selfinstruct.filters import FilterSettings, filter_candidates
from metareward.storage.artifacts import write_json, write_records
from metareward.storage.records import PromptRecord

log = logging.getLogger(__name__)

NEW_PROMPT_CATEGORY = "self-instruct"


@dataclass(frozen=True)
class SelfInstructSettings:
    """`num_prompts` new prompts are wanted; at most `max_rounds` rounds of `requests_per_round` generations."""

    num_prompts: int
    sampling: SamplingSettings = field(default_factory=lambda: SamplingSettings(0.6, 0.9, 64))  # paper: T=0.6, p=0.9
    filters: FilterSettings = field(default_factory=FilterSettings)
    num_examples: int = 6
    requests_per_round: int = 16
    max_rounds: int = 10
    batch_size: int = 16
    max_prompt_tokens: int = 1024
    seed: int = 0
    id_prefix: str = "si"
    progress: bool = True

    def problems(self) -> list[str]:
        found = list(self.filters.problems())
        for name in ("num_prompts", "num_examples", "requests_per_round", "max_rounds", "batch_size"):
            if getattr(self, name) < 1:
                found.append(f"{name}={getattr(self, name)} must be at least 1")
        return found


@dataclass
class SelfInstructResult:
    new_prompts: list[PromptRecord]
    drops: dict[str, int]
    generated: int
    rounds: int

    def summary(self) -> dict[str, object]:
        return {
            "new_prompts": len(self.new_prompts),
            "generated": self.generated,
            "rounds": self.rounds,
            "drops": dict(self.drops),
        }


def fewshot_requests(
    tokenizer: PreTrainedTokenizerBase, pool: Sequence[str], settings: SelfInstructSettings, round_index: int
) -> list[GenerationRequest]:
    """One round's requests: rendered few-shot prompts, each followed by the `Task <k+1>:` answer prefix."""
    requests = []
    for index in range(settings.requests_per_round):
        examples = choose_examples(
            pool, settings.num_examples, derive_seed(settings.seed, "si-examples", round_index, index)
        )
        prompt = render_prompt(tokenizer, build_fewshot_message(examples)) + answer_prefix(len(examples))
        seed = derive_seed(settings.seed, "si-sample", round_index, index)
        requests.append(GenerationRequest(key=(round_index, index), prompt=prompt, seed=seed))
    return requests


def self_instruct(
    backend: GenerationBackend, pool: Sequence[PromptRecord], settings: SelfInstructSettings, role: str = "actor"
) -> SelfInstructResult:
    """New prompts written few-shot by `role` of `backend` from `pool`, filtered and de-duplicated (see the module
    docstring)."""
    problems = settings.problems()
    if problems:
        raise ValueError("invalid self-instruct settings: " + "; ".join(problems) + ".")
    texts = [prompt.instruction for prompt in pool]
    kept: list[str] = []
    drops: Counter[str] = Counter()
    generated = rounds = 0
    while len(kept) < settings.num_prompts and rounds < settings.max_rounds:
        requests = fewshot_requests(backend.tokenizer, texts + kept, settings, rounds)
        generations = backend.generate(
            role,
            requests,
            RoleSettings(settings.sampling, settings.batch_size),
            f"self-instruct round {rounds + 1}",
            max_prompt_tokens=settings.max_prompt_tokens,
        )
        result = filter_candidates([g.text for g in generations], texts + kept, settings.filters)
        drops.update(result.drops)
        kept.extend(result.kept)
        generated += len(generations)
        rounds += 1
        log.info(
            "self-instruct round %d: kept %d of %d (total %d)", rounds, len(result.kept), len(generations), len(kept)
        )
    surplus = max(0, len(kept) - settings.num_prompts)
    drops["surplus"] += surplus  # kept by the filters but beyond the number asked for
    new = [
        PromptRecord(id=f"{settings.id_prefix}-{n:05d}", instruction=text, category=NEW_PROMPT_CATEGORY)
        for n, text in enumerate(kept[: settings.num_prompts], start=1)
    ]
    return SelfInstructResult(new_prompts=new, drops=dict(drops), generated=generated, rounds=rounds)


def write_augmented_pool(path: Path, pool: Sequence[PromptRecord], result: SelfInstructResult) -> int:
    """Seed pool then new prompts as JSONL at `path` (atomically), and the counts beside it as `<name>.stats.json`."""
    taken = {prompt.id for prompt in pool}
    clashes = [prompt.id for prompt in result.new_prompts if prompt.id in taken]
    if clashes:
        raise ValueError(f"new prompt ids clash with the pool ({clashes[:3]}); choose another id prefix.")
    written = write_records(path, [*pool, *result.new_prompts])
    write_json(path.with_name(path.stem + ".stats.json"), {"pool": len(pool), **result.summary()})
    return written
