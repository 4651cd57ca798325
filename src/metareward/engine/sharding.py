"""Splitting an iteration's generation work across processes and gathering the results.

Each rank makes its share of the requests; after every phase the records of all ranks are gathered and put in
the order a single process would have written them, so every rank builds the same pairs, equal to a one-process
run with the same seed (per-request seeds make a request's output independent of where it ran).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch.distributed as dist

from metareward.storage.records import PhaseResult

T = TypeVar("T")


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


ONE_PROCESS = Shard()  # a run without distributed training: rank 0 of 1
