"""Methods that add stages of their own to an iteration, each one class owning its stages, evidence and statistics.

The iteration makes the actor's responses and the judge's judgments of them, then hands that `Evidence` to each
chosen variant in turn; a variant runs its own stages and returns the evidence with what they added:
- `AnchoredAnswers` (`pairs/rejected=seed`, `engine.rejections`): the anchor role's answers and the current judge's
  judgments of them (stages anchor_responses, anchor_judgments), whose candidates become the rejected sides.
- `KeptWeights` (CREAM's previous judge, the implicit reward's earlier actors): the roles' weights saved as the
  iteration begins, for later iterations to read (`engine.weights_history`; `EngineSettings.kept_roles`).
- `PreviousJudge` (a labelling with `reads_previous_judge`, CREAM, `core.pair_labels`, with a ranking that reads
  the judge): every response of the iteration judged again with the previous iteration's judge (stage
  previous_judgments), read by the labelling.

`Variants.chosen` is the one place that maps the settings' choices to their variants; a new method that needs its
own stages is one `Variant` subclass plus its line there, and the iteration itself does not change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from metareward.core.actor_pairs import ScoredResponse
from metareward.engine.context import IterationContext
from metareward.engine.iteration_stats import anchor_stats, previous_judge_stats
from metareward.engine.pairs import pair_candidates
from metareward.engine.phases import Answering
from metareward.engine.rejections import Rejections
from metareward.engine.settings import EngineSettings
from metareward.engine.weights_history import WeightsHistory
from metareward.storage.records import JudgmentRecord, PhaseResult, ResponseRecord
from metareward.storage.run_layout import iteration_dir


@dataclass(frozen=True)
class Evidence:
    """What the iteration has judged: every response and judgment (the actor's first, then those a variant added),
    the anchors' pair candidates (anchored rejections), the previous judge's judgments (CREAM; None: none made),
    the statistics of the variants' stages, in the order they ran, and a ranking's own scores where the labels
    compare rankings made without the judge."""

    responses: tuple[ResponseRecord, ...]
    judgments: tuple[JudgmentRecord, ...]
    anchors: Mapping[str, Sequence[ScoredResponse]] | None = None
    previous_judgments: tuple[JudgmentRecord, ...] | None = None
    stats: Mapping[str, float] = field(default_factory=dict)
    # a ranking made without the judge: its scores now and one iteration ago (None: none), for CREAM's labels
    ranking: tuple[Mapping[tuple[str, int], float], Mapping[tuple[str, int], float] | None] | None = None

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
class KeptWeights(Variant):
    """Saves M_t's weights of each of `roles` as the iteration begins, for the iterations after it."""

    history: WeightsHistory
    roles: tuple[str, ...]

    def begin(self, context: IterationContext) -> None:
        if context.shard.writes:
            for role in self.roles:
                self.history.save(context.folder, role)

    def gather(self, context: IterationContext, evidence: Evidence) -> Evidence:
        return evidence


@dataclass(frozen=True)
class PreviousJudge(Variant):
    """Judges every response of the iteration again with iteration t - 1's judge where one was saved (in iteration
    1: the judge before the warm start, when the run has one)."""

    history: WeightsHistory

    def gather(self, context: IterationContext, evidence: Evidence) -> Evidence:
        previous, folder = None, iteration_dir(context.run_dir, context.iteration - 1)
        if self.history.saved(folder, "judge"):
            with context.clock("previous_judge"), self.history.lent(folder, "judge"):
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
    def of(cls, settings: EngineSettings, history: WeightsHistory | None) -> Variants:
        """The variants `settings` choose: anchors when the rejections have an anchor role; kept weights when a
        later iteration reads this one's (which needs the run's weights `history`), and the previous judge when the
        labelling reads it."""
        chosen: list[Variant] = []
        if settings.rejections.anchor_role is not None:
            chosen.append(AnchoredAnswers(settings.rejections))
        roles = settings.kept_roles()
        if roles:
            if history is None:
                raise ValueError(f"the iterations read earlier versions of {list(roles)}: pass the weights history")
            chosen.append(KeptWeights(history, roles))
            if "judge" in roles:
                chosen.append(PreviousJudge(history))
        return cls(tuple(chosen))

    def begin(self, context: IterationContext) -> None:
        for variant in self.chosen:
            variant.begin(context)

    def gather(self, context: IterationContext, evidence: Evidence) -> Evidence:
        for variant in self.chosen:
            evidence = variant.gather(context, evidence)
        return evidence
