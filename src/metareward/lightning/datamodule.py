"""The DataModule that regenerates self-judged preference data at the start of every epoch-iteration.

Lightning reloads the train dataloader every epoch (`reload_dataloaders_every_n_epochs=1`); each reload runs the
data engine with the model as it is now (M_t), scores the pairs with M_t as the DPO reference, and serves them
in batches of a single kind (actor or judge), since each kind trains its own adapter.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset, Sampler

from metareward.core.seeding import derive_seed
from metareward.engine.iteration import IterationData, make_iteration_data
from metareward.engine.prompt_pool import PromptPool
from metareward.engine.settings import EngineSettings
from metareward.engine.sharding import Shard
from metareward.engine.weights_history import WeightsHistory
from metareward.generation.backends import Processes
from metareward.lightning.handoff import RunContext, iteration_of
from metareward.lightning.strategies import full_weights
from metareward.model.adapters import PAIR_KIND_ROLE, RoleAdapters
from metareward.storage.artifacts import read_records, write_records
from metareward.storage.records import PairRecord
from metareward.storage.run_layout import iteration_dir
from metareward.training.collate import PairCollator
from metareward.training.reference import reference_logprobs

log = logging.getLogger(__name__)


@contextmanager
def step_arithmetic(trainer: L.Trainer, adapters: RoleAdapters) -> Iterator[None]:
    """What the DPO step's forward pass runs in: the trainer's precision, then the adapters' compute dtype."""
    with trainer.precision_plugin.train_step_context(), adapters.compute_context():
        yield


def agreed_digest(pairs: Sequence[PairRecord], shard: Shard) -> str:
    """A digest of the pairs' texts, checked to be the same on every rank (they must all train on one data set)."""
    canonical = json.dumps([(p.kind, p.prompt_id, p.prompt, p.chosen, p.rejected) for p in pairs])
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    if shard.world_size > 1 and len(set(shard.exchange(digest))) > 1:
        raise RuntimeError("the ranks of this run made different preference pairs; please report this as a bug")
    return digest


class PairDataset(Dataset):
    def __init__(self, pairs: Sequence[PairRecord]) -> None:
        self.pairs = list(pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> PairRecord:
        return self.pairs[index]


class SingleKindBatches(Sampler[list[int]]):
    """Shuffled batches that never mix actor and judge pairs, over `passes` passes of the data.

    With several processes, rank r takes every world_size-th batch of one shared plan, made of steps of world_size
    batches of one kind: at every step all ranks train the same adapter, so an adapter's parameters take part on
    every rank or on none (FSDP reduces each LoRA matrix's gradients only where it was used). Each kind's batches
    are first extended by repeating its opening ones to fill its last step.
    """

    def __init__(
        self, kinds: Sequence[str], batch_size: int, passes: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.kinds, self.batch_size, self.passes, self.seed = list(kinds), batch_size, passes, seed
        self.batches = self._plan(world_size)[rank::world_size]

    def _plan(self, world_size: int) -> list[list[int]]:
        rng = random.Random(self.seed)
        batches: list[list[int]] = []
        for _ in range(self.passes):
            steps = []
            for kind in sorted(set(self.kinds)):
                indices = [i for i, k in enumerate(self.kinds) if k == kind]
                rng.shuffle(indices)
                planned = [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
                planned += [planned[i % len(planned)] for i in range((-len(planned)) % world_size)]
                steps += [planned[i : i + world_size] for i in range(0, len(planned), world_size)]
            rng.shuffle(steps)
            batches += [batch for step in steps for batch in step]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


@dataclass
class KindCollator:
    """PairCollator plus the batch's kind; an empty iteration yields one marker batch the module skips."""

    collator: PairCollator

    def __call__(self, pairs: Sequence[PairRecord]) -> dict[str, Any]:
        if not pairs:
            return {"pairs": 0}
        batch = self.collator(pairs)
        batch["kind"] = pairs[0].kind
        batch["pairs"] = len(pairs)
        return batch


class SelfJudgedDataModule(L.LightningDataModule):
    """Makes iteration t's pairs at the start of epoch t - 1 and hands them to the callbacks through the run's
    `RunContext` (which also gives it the adapters, the run directory and the generation backend)."""

    def __init__(
        self,
        context: RunContext,
        settings: EngineSettings,
        pool: PromptPool,
        collator: PairCollator,
        batch_size: int,
        epochs_per_iteration: int = 1,
        reference_batch_size: int = 8,
        resume: bool = False,
    ) -> None:
        super().__init__()
        self.context = context
        self.settings = settings
        self.pool = pool
        self.collator = collator
        self.batch_size = batch_size
        self.epochs_per_iteration = epochs_per_iteration
        self.reference_batch_size = reference_batch_size
        self.resume = resume

    def teardown(self, stage: str) -> None:
        self.context.close_backend()  # built once by the first `context.backend()`: a vLLM server starts only once

    def train_dataloader(self) -> DataLoader:
        iteration = iteration_of(self.trainer)
        shard = Shard(self.trainer.global_rank, self.trainer.world_size)
        strategy = self.trainer.strategy
        self.context.join(Processes(shard.rank, shard.world_size, lambda value: strategy.broadcast(value, src=0)))
        policy = self.context.backend()
        with full_weights(self.trainer):  # the model is called outside the strategy's forward: see strategies.py
            made = make_iteration_data(
                policy,
                self.settings,
                self.pool,
                iteration,
                self.context.run_dir,
                reuse=self.resume,
                shard=shard,
                oversize=self.collator.oversize,
                history=WeightsHistory(self.context.adapters),
            )
            pairs, stats = self._reference_pairs(made, shard)
        stats["data/world_size"] = float(shard.world_size)
        data = made.scored(pairs, agreed_digest(pairs, shard), stats)
        self.context.publish_data(data)
        policy.release()  # DPO trains next: a vLLM engine sleeps or stops if generation.while_training says so
        if not data.pairs:
            log.warning("iteration %d made no preference pairs: training is skipped for this iteration", iteration)
            return DataLoader([[]], batch_size=None, collate_fn=KindCollator(self.collator))
        sampler = SingleKindBatches(
            [p.kind for p in data.pairs],
            self.batch_size,
            self.epochs_per_iteration,
            derive_seed(self.settings.seed, "batches", iteration),
            shard.rank,
            shard.world_size,
        )
        return DataLoader(PairDataset(data.pairs), batch_sampler=sampler, collate_fn=KindCollator(self.collator))

    def _reference_pairs(self, made: IterationData, shard: Shard) -> tuple[list[PairRecord], dict[str, float]]:
        """The iteration's pairs with reference log-probs from M_t (read back on resume), and the stats to merge."""
        start = time.perf_counter()
        scored_path = iteration_dir(self.context.run_dir, made.iteration) / "train_pairs.jsonl"
        stats: dict[str, float] = {}
        if self.resume and scored_path.is_file():
            pairs = read_records(scored_path, PairRecord)
            stats["data/stages_reused"] = made.stats["data/stages_reused"] + 1
        else:
            pairs = self._with_reference(self.context.adapters, made.pairs, made.iteration, shard)
            if shard.writes:
                write_records(scored_path, pairs)
        stats["time/reference"] = time.perf_counter() - start
        return pairs, stats

    def _with_reference(
        self, adapters: RoleAdapters, pairs: Sequence[PairRecord], iteration: int, shard: Shard
    ) -> list[PairRecord]:
        """Reference log-probs from M_t, each kind scored with the adapter that kind trains (sharded by rank)."""
        scored: dict[int, PairRecord] = {}
        for kind, role in PAIR_KIND_ROLE.items():
            positions = shard.take([i for i, p in enumerate(pairs) if p.kind == kind])
            if not positions:
                continue
            with adapters.role(role) as model:
                done = reference_logprobs(
                    model,
                    self.collator,
                    [pairs[i] for i in positions],
                    batch_size=self.reference_batch_size,
                    desc=f"iteration {iteration}: reference ({kind})",
                    progress=self.settings.progress,
                    context=lambda: step_arithmetic(self.trainer, adapters),  # what the DPO step computes in
                )
            scored.update(zip(positions, done))
        everything = shard.gather_list(sorted(scored.items()), order=lambda item: item[0])
        return [pair for _, pair in everything]
