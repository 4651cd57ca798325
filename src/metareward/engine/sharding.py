"""Splitting an iteration's generation work across processes and gathering the results.

Each rank makes its share of the requests; after every phase the records of all ranks are gathered and put in
the order a single process would have written them, so every rank builds the same pairs, equal to a one-process
run with the same seed (per-request seeds make a request's output independent of where it ran). Work every rank
asks for alike (the evaluations after each iteration) goes through `shared_out`, which splits each backend call the
same way and hands every rank all the results.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch.distributed as dist

from metareward.generation.policy import GenerationBackend
from metareward.generation.sampler import Generation, GenerationRequest
from metareward.storage.records import PhaseResult

T = TypeVar("T")
R = TypeVar("R")


def all_ranks(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order (torch.distributed when initialised, else just this one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world_size: int = 1
    exchange: Callable[[Any], list[Any]] = all_ranks

    @property
    def writes(self) -> bool:
        """Only rank 0 writes artifacts; the others hold the same records in memory."""
        return self.rank == 0

    def take(self, items: Sequence[T]) -> list[T]:
        return list(items)[self.rank :: self.world_size]

    def gather(self, result: PhaseResult, order: Callable[[Any], Any]) -> PhaseResult:
        """All ranks' records in single-process order, with their drop and failure counts added up."""
        if self.world_size == 1:
            return result
        parts = self.exchange((result.records, result.drops, result.parse_failures))
        records = sorted((record for part in parts for record in part[0]), key=order)
        drops: Counter[str] = Counter()
        for part in parts:
            drops.update(part[1])
        return PhaseResult(records, dict(drops), sum(part[2] for part in parts))

    def gather_list(self, items: list[T], order: Callable[[T], Any]) -> list[T]:
        if self.world_size == 1:
            return items
        return sorted((item for part in self.exchange(items) for item in part), key=order)

    def each(self, work: Callable[[list[T]], Sequence[R]], items: Sequence[T]) -> list[R]:
        """`work(items)` with each rank doing its share and every rank getting all results, in order (every rank
        calls it with the same `items`). When a rank's share fails, every rank raises at once: none waits on it."""
        if self.world_size == 1:
            return list(work(list(items)))
        mine = self.take(range(len(items)))
        try:
            done, failure = list(zip(mine, work([items[i] for i in mine]))), None
        except Exception as error:  # noqa: BLE001 - shared with the other ranks, then raised here as it was
            done, failure = [], error
        parts = self.exchange((done, None if failure is None else f"{type(failure).__name__}: {failure}"))
        if failure is not None:
            raise failure
        failed = [(rank, part[1]) for rank, part in enumerate(parts) if part[1] is not None]
        if failed:
            raise ShareFailedError(f"the training process of rank {failed[0][0]} failed: {failed[0][1]}")
        return [result for _, result in sorted((pair for part in parts for pair in part[0]), key=lambda p: p[0])]


class ShareFailedError(RuntimeError):
    """Another rank's share of a shared call failed (its own error is raised there)."""


@dataclass(frozen=True)
class ShardedBackend:
    """A generation backend whose every call is shared out over the training processes (`Shard.each`): each rank
    generates or reads its share and gets every result back, so work that every rank asks for alike (the
    evaluations) is done once per run instead of once per rank. Every rank must make the same calls."""

    inner: GenerationBackend
    shard: Shard

    def __getattr__(self, name: str) -> Any:  # tokenizer, max_prompt_tokens, cue_read, release, close
        return getattr(self.inner, name)

    # Each call passes its other arguments on as they are: only the requests, contexts or rows are split.
    def generate(self, role: str, requests: Sequence[GenerationRequest], *rest: Any, **named: Any) -> list[Generation]:
        return self.shard.each(lambda part: self.inner.generate(role, part, *rest, **named), requests)

    def choose(
        self, role: str, contexts: Sequence[str], choices: Sequence[str], *rest: Any, **named: Any
    ) -> np.ndarray:
        rows = self.shard.each(lambda part: self.inner.choose(role, part, choices, *rest, **named), contexts)
        return np.asarray(rows, dtype=np.float64).reshape(len(contexts), len(choices))

    def completion_logprobs(self, role: str, rows: Sequence[tuple[Any, Any]], *rest: Any, **named: Any) -> list[float]:
        return self.shard.each(lambda part: self.inner.completion_logprobs(role, part, *rest, **named), rows)


def shared_out(backend: GenerationBackend, shard: Shard) -> GenerationBackend:
    """`backend` with its calls shared out over `shard`'s ranks; itself for one process."""
    return backend if shard.world_size == 1 else ShardedBackend(backend, shard)  # type: ignore[return-value]


ONE_PROCESS = Shard()  # a run without distributed training: rank 0 of 1
