"""What every stage of one iteration shares, and the one way a stage is run.

A stage is one kind of record made for the whole iteration and kept as `<name>.jsonl` (with `<name>.counts.json`).
`IterationContext.stage` owns what every stage needs: read it back when a resumed run finds it finished; else each
process makes its share, the shares are gathered in the order one process would have written them, and rank 0 stores
the whole. Per-request seeds make a stage's records independent of how the work was shared out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from metareward.engine import phases
from metareward.engine.judging import FinalLine, calibrated
from metareward.engine.settings import EngineSettings
from metareward.engine.sharding import ONE_PROCESS, Shard
from metareward.engine.stages import StageStore
from metareward.engine.timing import Stopwatch
from metareward.generation.policy import Policy
from metareward.storage.records import (
    ComparisonRecord,
    JudgmentRecord,
    LikelihoodRecord,
    MetaJudgmentRecord,
    PhaseResult,
    PromptRecord,
    ResponseRecord,
)
from metareward.storage.run_layout import iteration_dir

T = TypeVar("T")
ACTOR_ANSWERS = phases.Answering()  # the actor's K answers per prompt

# Where a record stands among its prompt's records of the same stage, in the order one process writes them.
WITHIN_PROMPT: Mapping[type, Callable[[Any], tuple[int, ...]]] = {
    ResponseRecord: lambda r: (r.index,),
    JudgmentRecord: lambda j: (j.response_index, j.index),
    MetaJudgmentRecord: lambda v: (v.first, v.second),
    ComparisonRecord: lambda c: (c.first, c.second),
    LikelihoodRecord: lambda r: (r.index,),
}


@dataclass(frozen=True)
class IterationContext:
    """Iteration t's model (M_t), settings, prompts, stage store, this process's shard of the work and clock."""

    policy: Policy
    settings: EngineSettings
    iteration: int
    prompts: tuple[PromptRecord, ...]
    run_dir: Path
    store: StageStore
    shard: Shard = ONE_PROCESS
    clock: Stopwatch = field(default_factory=Stopwatch)

    @classmethod
    def start(
        cls,
        policy: Policy,
        settings: EngineSettings,
        iteration: int,
        prompts: Sequence[PromptRecord],
        run_dir: Path,
        reuse: bool = False,
        shard: Shard = ONE_PROCESS,
    ) -> IterationContext:
        """The context of `iteration`, its stages kept in its folder (and read back there when `reuse`)."""
        store = StageStore(iteration_dir(run_dir, iteration), reuse, write=shard.writes)
        return cls(policy, settings, iteration, tuple(prompts), run_dir, store, shard)

    @property
    def folder(self) -> Path:
        return self.store.directory

    @cached_property
    def by_id(self) -> dict[str, PromptRecord]:
        return {prompt.id: prompt for prompt in self.prompts}

    @cached_property
    def position(self) -> dict[str, int]:
        return {prompt.id: i for i, prompt in enumerate(self.prompts)}

    def stage(
        self,
        name: str,
        record_type: type,
        make: Callable[[list[T]], PhaseResult],
        items: Sequence[T],
        finish: Callable[[PhaseResult], PhaseResult] | None = None,
    ) -> PhaseResult:
        """The stage `name` of `record_type` records: read back when resuming finds it finished; else `make` of this
        process's share of `items`, gathered from every process in one process's order, then `finish` of the whole
        (calibration needs the whole iteration's verdicts), stored by rank 0."""
        within = WITHIN_PROMPT[record_type]

        def order(record: Any) -> tuple[int, ...]:
            return (self.position[record.prompt_id], *within(record))

        def made() -> PhaseResult:
            gathered = self.shard.gather(make(self.shard.take(items)), order)
            return finish(gathered) if finish is not None else gathered

        return self.store.run(name, record_type, made)

    def respond(self, name: str, answering: phases.Answering = ACTOR_ANSWERS) -> PhaseResult:
        """The stage `name` of answers to the iteration's prompts (the actor's unless `answering` says who)."""
        return self.stage(
            name,
            ResponseRecord,
            lambda share: phases.respond(self.policy, self.settings, self.iteration, share, answering),
            self.prompts,
        )

    def judge(self, name: str, responses: Sequence[ResponseRecord], label: str = "judge") -> PhaseResult:
        """The stage `name` of the judge adapter's judgments of `responses` (`label` names the pass in progress)."""
        return self.stage(
            name,
            JudgmentRecord,
            lambda share: phases.judge(self.policy, self.settings, self.iteration, self.by_id, share, label),
            responses,
        )

    def verdict_stage(
        self, name: str, record_type: type, make: Callable[[list[T]], PhaseResult], items: Sequence[T], line: FinalLine
    ) -> PhaseResult:
        """A stage of A-versus-B verdicts read on `line`, position-calibrated over the whole iteration when
        `meta_judge.calibrate_position` is on (`engine.judging.calibrated_verdicts`)."""
        finish = (lambda result: calibrated(result, line)) if self.settings.calibrate_position else None
        return self.stage(name, record_type, make, items, finish)
