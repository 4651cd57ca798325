"""The hand-offs between a run's Lightning objects, in one typed place: `RunContext`.

The run makes one `RunContext` before anything loads and passes it by constructor to the DataModule and to every
`RunCallback`. Through it, and through nothing else (no `trainer.datamodule.<attr>`, no `pl_module.<attr>` that
another callback filled), they share:

- `run_dir`, and once the model is loaded (`attach_model`), the `adapters` and the `tokenizer`;
- the generation backend, `backend()`: built once on first use, so a vLLM server starts only once; the DataModule
  closes it in its teardown (`close_backend`);
- the current iteration's data: the DataModule `publish_data`s it once made, callbacks read `data_for(t)`;
- the evaluation results `board`: each evaluation callback publishes its figures under its own name, the dashboard
  and the summary read them;
- the run's `judge_prompt` (conf/judge/prompt), so that evaluations score answers on the scale the loop judges with.

The iteration number has one source, `iteration_of(trainer)`.

Order between callbacks is explicit, not the YAML's: each `RunCallback` declares its `Stage`, and the run puts the
callbacks in stage order with `in_run_order` (a stable sort: within a stage the YAML order holds). So every
evaluation publishes before the dashboard and the summary read the board, whatever order the config lists them
in. A callback list that skipped `in_run_order` (a hand-built Trainer) is refused at its first late publication:
the summary seals an iteration when it writes it, and the board refuses figures for a sealed iteration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from enum import IntEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import lightning as L

from metareward.engine.iteration import IterationData
from metareward.engine.sharding import Shard, shared_out
from metareward.generation.backends import ONE_PROCESS, Processes

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from metareward.core.prompts import JudgePrompt
    from metareward.engine.settings import EngineSettings
    from metareward.generation.policy import GenerationBackend
    from metareward.generation.spec import GenerationSpec
    from metareward.model.adapters import RoleAdapters

# (adapters, tokenizer, processes=...) -> the run's generation backend; called once, on first use.
BackendBuilder = Callable[..., "GenerationBackend"]


def iteration_of(trainer: L.Trainer) -> int:
    """The loop iteration t that the current Lightning epoch e (0-based) runs: t = e + 1.

    Iteration t makes its data with M_t and trains M_{t+1}; Lightning's epoch counter only moves on after every
    `on_train_epoch_end` hook, so the DataModule and every callback get the same t within one epoch. This is the
    one place the number is derived.
    """
    return trainer.current_epoch + 1


class Stage(IntEnum):
    """When a callback's end-of-iteration work runs, relative to the other callbacks (see `in_run_order`)."""

    SAVE = 0  # adapter checkpoints first: a run killed during evaluation keeps the iteration's adapters
    EVALUATE = 1  # publish figures on the board
    REPORT = 2  # read the board (plots, tables)
    SUMMARIZE = 3  # summary.json: reads the board and seals the iteration
    RESUME = 4  # the Lightning checkpoint last: once it is written, the iteration counts as done


# A Lightning callback that is not a RunCallback (e.g. LearningRateMonitor) gets no context and runs here.
OTHER_STAGE = Stage.EVALUATE


class ResultsBoard:
    """Evaluation figures per iteration, kept under the name of the callback that published them."""

    def __init__(self) -> None:
        self._figures: dict[int, dict[str, dict[str, Any]]] = {}
        self._sealed: set[int] = set()

    def publish(self, iteration: int, source: str, figures: Mapping[str, Any]) -> None:
        """Add `source`'s figures for iteration t; a source that publishes twice has its figures merged."""
        if iteration in self._sealed:
            raise RuntimeError(
                f"evaluation callback {source!r} published figures for iteration {iteration} after the summary wrote "
                "that iteration; build the Trainer's callbacks with metareward.lightning.handoff.in_run_order"
            )
        published = self._figures.setdefault(iteration, {})
        clashes = sorted(
            {name for other, theirs in published.items() if other != source for name in theirs} & set(figures)
        )
        if clashes:
            raise ValueError(
                f"evaluation callback {source!r} publishes {clashes} for iteration {iteration}, which another "
                "callback already published; give one of them another name"
            )
        published.setdefault(source, {}).update(figures)

    def by_source(self, iteration: int) -> dict[str, dict[str, Any]]:
        """Iteration t's figures, per publishing callback."""
        return {source: dict(figures) for source, figures in self._figures.get(iteration, {}).items()}

    def figures(self, iteration: int) -> dict[str, Any]:
        """Iteration t's figures of every callback in one mapping (in publication order), as summary.json holds them."""
        return {name: value for figures in self._figures.get(iteration, {}).values() for name, value in figures.items()}

    def seal(self, iteration: int) -> dict[str, Any]:
        """Iteration t's figures, after which the board refuses more for t: what the summary writes is complete."""
        self._sealed.add(iteration)
        return self.figures(iteration)


class RunContext:
    """What the run hands to its DataModule and to every RunCallback, by constructor (see the module docstring)."""

    def __init__(self, run_dir: str | Path, build_backend: BackendBuilder, judge_prompt: JudgePrompt) -> None:
        self.run_dir = Path(run_dir)
        self.judge_prompt = judge_prompt
        self.board = ResultsBoard()
        self._build_backend = build_backend
        self._model: tuple[RoleAdapters, PreTrainedTokenizerBase] | None = None
        self._backend: GenerationBackend | None = None
        self._data: IterationData | None = None
        self._processes = ONE_PROCESS

    @classmethod
    def for_run(cls, run_dir: str | Path, generation: GenerationSpec, engine: EngineSettings) -> RunContext:
        """The context of a run whose backend is the configured one (conf/generation: hf or vllm)."""
        from metareward.generation.backends import build_backend

        backend = partial(
            build_backend,
            generation,
            run_dir=Path(run_dir),
            max_prompt_tokens=engine.max_prompt_tokens,
            progress=engine.progress,
        )
        return cls(run_dir, backend, engine.judge_prompt)

    def attach_model(self, adapters: RoleAdapters, tokenizer: PreTrainedTokenizerBase) -> None:
        """The loaded model: the context exists before it so that every callback (and every bad file one names)
        is built first; the model is attached once loaded, before training starts."""
        self._model = (adapters, tokenizer)

    @property
    def adapters(self) -> RoleAdapters:
        return self._loaded()[0]

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self._loaded()[1]

    def _loaded(self) -> tuple[RoleAdapters, PreTrainedTokenizerBase]:
        if self._model is None:
            raise RuntimeError("the run's model is not attached: call RunContext.attach_model before training")
        return self._model

    def join(self, processes: Processes) -> None:
        """The training processes this one is among (before the first `backend()`: they share its servers)."""
        self._processes = processes

    def backend(self) -> GenerationBackend:
        """The run's generation backend, built on first use and shared by the data engine and the evaluations."""
        if self._backend is None:
            self._backend = self._build_backend(self.adapters, self.tokenizer, processes=self._processes)
        return self._backend

    @property
    def shard(self) -> Shard:
        """This process's place among the training processes (`join`)."""
        return Shard(self._processes.rank, self._processes.world_size)

    def evaluation_backend(self) -> GenerationBackend:
        """The run's backend with each call shared out over the training processes: every rank evaluates alike, so
        each makes its share of the answers and reads and gets them all (one process: the backend itself)."""
        return shared_out(self.backend(), self.shard)

    def close_backend(self) -> None:
        """Stop the backend (a vLLM server started for the run); a later `backend()` builds a new one."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def publish_data(self, data: IterationData) -> None:
        """The DataModule's hand-over of iteration t's data, once its pairs are scored."""
        self._data = data

    def data_for(self, iteration: int) -> IterationData | None:
        """Iteration t's data, or None when the DataModule has made none for t (yet)."""
        return self._data if self._data is not None and self._data.iteration == iteration else None


class RunCallback(L.Callback):
    """A callback the run builds with its RunContext (passed as `context=`) and puts in the order of its `stage`."""

    stage: ClassVar[Stage] = OTHER_STAGE

    def __init__(self, context: RunContext) -> None:
        self.context = context


def stage_of(callback: L.Callback) -> Stage:
    return callback.stage if isinstance(callback, RunCallback) else OTHER_STAGE


def in_run_order(callbacks: Iterable[L.Callback]) -> list[L.Callback]:
    """The callbacks in stage order (stable: the given order holds within a stage), the order the run uses."""
    return sorted(callbacks, key=stage_of)
