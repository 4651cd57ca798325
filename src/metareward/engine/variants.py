"""Methods that add stages of their own to an iteration, each one class owning its stages, evidence and statistics.

The iteration makes the actor's responses and the judge's judgments of them, then hands that `Evidence` to each
chosen variant in turn; a variant runs its own stages and returns the evidence with what they added:
- `AnchoredAnswers` (`pairs/rejected=seed`, `engine.rejections`): the anchor role's answers and the current judge's
  judgments of them (stages anchor_responses, anchor_judgments), whose candidates become the rejected sides.
- `PreviousJudge` (a labelling with `reads_previous_judge`, CREAM, `core.pair_labels`): every response of the
  iteration judged again with the previous iteration's judge (stage previous_judgments), read by the labelling.

`Variants.chosen` is the one place that maps the settings' choices to their variants; a new method that needs its
own stages is one `Variant` subclass plus its line there, and the iteration itself does not change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from metareward.core.actor_pairs import ScoredResponse
from metareward.engine.context import IterationContext
from metareward.engine.iteration_stats import anchor_stats, previous_judge_stats
from metareward.engine.judge_history import JudgeHistory
from metareward.engine.pairs import pair_candidates
from metareward.engine.phases import Answering
from metareward.engine.rejections import Rejections
from metareward.engine.settings import EngineSettings
from metareward.storage.records import JudgmentRecord, PhaseResult, ResponseRecord
from metareward.storage.run_layout import iteration_dir


@dataclass(frozen=True)
class Evidence:
    """What the iteration has judged: every response and judgment (the actor's first, then those a variant added),
    the anchors' pair candidates (anchored rejections), the previous judge's judgments (CREAM; None: none made),
    and the statistics of the variants' stages, in the order they ran."""

    responses: tuple[ResponseRecord, ...]
    judgments: tuple[JudgmentRecord, ...]
    anchors: Mapping[str, Sequence[ScoredResponse]] | None = None
    previous_judgments: tuple[JudgmentRecord, ...] | None = None
    stats: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, responded: PhaseResult, judged: PhaseResult) -> Evidence:
        """The actor's responses and the current judge's judgments of them."""
        return cls(tuple(responded.records), tuple(judged.records))

    def adding(self, stats: Mapping[str, float], **found: object) -> Evidence:
        return replace(self, stats={**self.stats, **stats}, **found)  # type: ignore[arg-type]


class Variant:
    """A method's own stages: `begin` before any stage of the iteration runs, `gather` after the actor's judgments."""

    def begin(self, context: IterationContext) -> None:
        """Anything the method must do as the iteration begins (nothing by default)."""

    def gather(self, context: IterationContext, evidence: Evidence) -> Evidence:
        raise NotImplementedError


@dataclass(frozen=True)
class AnchoredAnswers(Variant):
    """The anchor role's answers to the iteration's prompts (numbered after the actor's K) and the current judge's
    judgments of them, each a stage of its own; their candidates are the rejected sides of the actor pairs."""

    rejections: Rejections

    def gather(self, context: IterationContext, evidence: Evidence) -> Evidence:
        settings, role = context.settings, str(self.rejections.anchor_role)
        answering = Answering(
            role=role,
            count=self.rejections.anchors(settings.num_responses),
            first_index=settings.num_responses,
            label=f"{role} anchor responses",
        )
        with context.clock("anchors"):
            responded = context.respond("anchor_responses", answering)
            judged = context.judge("anchor_judgments", responded.records)
        anchors, unfinished = pair_candidates(responded.records, judged.records, settings.unfinished)
        return evidence.adding(
            anchor_stats(responded, judged, unfinished),
            responses=evidence.responses + tuple(responded.records),
            judgments=evidence.judgments + tuple(judged.records),
            anchors=anchors,
        )


@dataclass(frozen=True)
class PreviousJudge(Variant):
    """Saves M_t's judge as the iteration begins (for iteration t + 1), and judges every response of the iteration
    again with iteration t - 1's judge where one was saved (in iteration 1: the judge before the warm start, when
    the run has one)."""

    history: JudgeHistory

    def begin(self, context: IterationContext) -> None:
        if context.shard.writes:
            self.history.save(context.folder)

    def gather(self, context: IterationContext, evidence: Evidence) -> Evidence:
        previous, folder = None, iteration_dir(context.run_dir, context.iteration - 1)
        if self.history.saved(folder):
            with context.clock("previous_judge"), self.history.lent(folder):
                previous = context.judge("previous_judgments", evidence.responses, "previous judge")
        return evidence.adding(
            previous_judge_stats(previous, evidence.judgments),
            previous_judgments=tuple(previous.records) if previous is not None else None,
        )


@dataclass(frozen=True)
class Variants:
    """The chosen variants, in the order their stages run (the previous judge also judges the anchors)."""

    chosen: tuple[Variant, ...] = ()

    @classmethod
    def of(cls, settings: EngineSettings, history: JudgeHistory | None) -> Variants:
        """The variants `settings` choose: anchors when the rejections have an anchor role, the previous judge when
        the labelling reads it (which needs the run's judge `history`)."""
        chosen: list[Variant] = []
        if settings.rejections.anchor_role is not None:
            chosen.append(AnchoredAnswers(settings.rejections))
        if settings.pair_labels.reads_previous_judge:
            if history is None:
                labels = type(settings.pair_labels).__name__
                raise ValueError(f"{labels} compares judges of two iterations: pass the history")
            chosen.append(PreviousJudge(history))
        return cls(tuple(chosen))

    def begin(self, context: IterationContext) -> None:
        for variant in self.chosen:
            variant.begin(context)

    def gather(self, context: IterationContext, evidence: Evidence) -> Evidence:
        for variant in self.chosen:
            evidence = variant.gather(context, evidence)
        return evidence
