"""One iteration of data making with M_t: prompts -> responses -> judgments -> meta-judgments -> pairs.

Every stage is written to the iteration's directory as JSON Lines (atomically) as soon as it is done, so a run
can be inspected stage by stage (`engine.context`). Methods that add stages of their own (anchored rejections,
CREAM's previous judge) are variants (`engine.variants`); the ranking asks for comparisons when it needs them
(`engine.ranking`). Returns the pairs and flat, namespaced statistics for the logger and summary
(`engine.iteration_stats`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from metareward.core.actor_pairs import ScoredResponse
from metareward.core.drops import Selection, merge_drops
from metareward.engine import phases
from metareward.engine.comparing import comparer
from metareward.engine.context import IterationContext
from metareward.engine.iteration_stats import (
    actor_stats,
    data_warnings,
    label_stats,
    meta_stats,
    previous_ranking_stats,
    run_stats,
)
from metareward.engine.likelihoods import likelihood_reader
from metareward.engine.pairs import (
    actor_pairs,
    capped_chosen,
    fitting_pairs,
    judge_pairs,
    label_evidence,
    labelled,
    pair_candidates,
)
from metareward.engine.prompt_pool import PromptPool
from metareward.engine.ranking import Candidates, Likelihoods, Ranked
from metareward.engine.settings import EngineSettings
from metareward.engine.sharding import ONE_PROCESS, Shard
from metareward.engine.variants import Evidence, Variants
from metareward.engine.weights_history import WeightsHistory
from metareward.generation.policy import Policy
from metareward.storage.artifacts import write_json, write_records
from metareward.storage.records import MetaJudgmentRecord, PairRecord, PhaseResult

log = logging.getLogger(__name__)

Oversize = Callable[[PairRecord], str | None]  # why a pair does not fit the DPO token limits (None: it fits)


@dataclass(frozen=True)
class IterationData:
    """One iteration's pairs and statistics. Frozen: the DataModule's scored copy comes from `scored`, so the
    data an iteration made (and wrote to pairs.jsonl and stats.json) is never changed under a reader."""

    iteration: int
    pairs: list[PairRecord]
    stats: dict[str, float] = field(default_factory=dict)
    digest: str = ""  # of the pairs' texts, equal on every rank

    def scored(self, pairs: Sequence[PairRecord], digest: str, stats: Mapping[str, float]) -> IterationData:
        """A copy with `pairs` (now with reference log-probs), their `digest`, and `stats` merged over these."""
        return replace(self, pairs=list(pairs), stats={**self.stats, **stats}, digest=digest)


def make_iteration_data(
    policy: Policy,
    settings: EngineSettings,
    pool: PromptPool,
    iteration: int,
    run_dir: Path,
    reuse: bool = False,
    shard: Shard = ONE_PROCESS,
    oversize: Oversize = lambda pair: None,
    history: WeightsHistory | None = None,
) -> IterationData:
    """Make iteration t's pairs with the policy as it is now (M_t).

    `oversize` says why a pair does not fit the DPO token limits (the collator's check); such pairs are dropped and
    counted like every other drop, so nothing is cut at training time.

    With `reuse`, stages whose files a previous (interrupted) attempt finished are read back instead of redone;
    per-request seeds make a redone stage identical to the one an uninterrupted run would have written.
    With several processes, each makes its `shard` of every phase and all of them end with the same records.
    A labelling that reads the previous iteration's judge, or a ranking that reads earlier actors (CREAM), needs
    the run's weights `history`.
    """
    variants = Variants.of(settings, history)
    prompts = pool.sample(iteration, settings.prompts_per_iteration, settings.seed)
    context = IterationContext.start(policy, settings, iteration, prompts, run_dir, reuse, shard)
    variants.begin(context)
    if shard.writes:
        write_records(context.folder / "prompts.jsonl", prompts)

    with context.clock("generate"):
        responded = context.respond("responses")
    with context.clock("judge"):
        judged = context.judge("judgments", responded.records)
    evidence = variants.gather(context, Evidence.of(responded, judged))

    # judge/ranking: mean scores as they are (pointwise), or scores from comparisons the ranking asks for (pairwise).
    candidates, unfinished = pair_candidates(responded.records, judged.records, settings.unfinished)
    likelihoods = likelihood_reader(context, responded.records, history)
    ranked = settings.ranking.rank(candidates, comparer(context), likelihoods)
    evidence = _ranking_evidence(settings, evidence, candidates, ranked, likelihoods)
    actor = _actor_pairs(context, ranked.candidates, evidence, oversize)
    judge, judge_stats = _judge_pairs(context, responded, judged, oversize)

    stats = {
        **actor_stats(prompts, responded, judged, actor, settings.rho_for(iteration), unfinished),
        **ranked.stats,
        **label_stats(actor.items),
        **evidence.stats,
        **judge_stats,
        **run_stats(context.clock, context.store),
        "data/prompts_reused": float(pool.reused(iteration, settings.prompts_per_iteration)),
    }
    pairs = [*actor.items, *judge]
    if shard.writes:
        write_records(context.folder / "pairs.jsonl", pairs)
        write_json(context.folder / "stats.json", stats)
    log.info(
        "iteration %d: %d actor pairs, %d judge pairs (dropped: %s)",
        iteration,
        int(stats["pairs/actor_count"]),
        int(stats["pairs/judge_count"]),
        {k.split("/", 1)[1]: int(v) for k, v in stats.items() if "dropped/" in k} or "none",
    )
    for warning in data_warnings(iteration, stats):
        log.warning(warning)
    return IterationData(iteration, pairs, stats)


def _ranking_evidence(
    settings: EngineSettings, evidence: Evidence, candidates: Candidates, ranked: Ranked, likelihoods: Likelihoods
) -> Evidence:
    """With a ranking made without the judge, what CREAM's consistency labels compare: the ranking's scores now
    and one iteration ago (instead of the current and the previous judge's)."""
    if settings.ranking.reads_judge or not settings.pair_labels.reads_previous_judge:
        return evidence
    scores = {(pid, r.index): r.score for pid, rs in ranked.candidates.items() for r in rs if r.score is not None}
    previous = settings.ranking.previous(candidates, likelihoods)
    return evidence.adding(previous_ranking_stats(scores, previous), ranking=(scores, previous))


def _actor_pairs(
    context: IterationContext,
    candidates: Mapping[str, Sequence[ScoredResponse]],
    evidence: Evidence,
    oversize: Oversize,
) -> Selection[PairRecord]:
    """One actor pair per prompt from the ranked `candidates` (the rejected side from the anchors when there are
    any), that fits the DPO limits, with the label the configured labelling gives it."""
    settings = context.settings
    finished = {(r.prompt_id, r.index): r.finished for r in evidence.responses}
    reasoning = {(r.prompt_id, r.index): r.reasoning for r in evidence.responses if r.reasoning}
    rho = settings.rho_for(context.iteration)
    selected = actor_pairs(
        context.by_id, candidates, rho, settings.pair_strategy, finished, evidence.anchors, reasoning
    )
    fit = fitting_pairs(capped_chosen(selected, settings.chosen_cap_for(context.iteration)), oversize)
    found = label_evidence(evidence.judgments, settings.judge_prompt.score_values, evidence.previous_judgments)
    if evidence.ranking is not None:
        found = replace(found, scores=evidence.ranking[0], previous_scores=evidence.ranking[1])
    return Selection(tuple(labelled(fit.items, settings.pair_labels, found)), fit.drops)


def _judge_pairs(
    context: IterationContext, responded: PhaseResult, judged: PhaseResult, oversize: Oversize
) -> tuple[tuple[PairRecord, ...], dict[str, float]]:
    """In an iteration that trains the judge, its pairs and their statistics (METHOD steps 5-6): per prompt the
    judgments of the response whose scores vary most, meta-judged in every order (stage meta_judgments), weighted
    against position bias and ranked by Elo. None otherwise."""
    policy, settings, iteration = context.policy, context.settings, context.iteration
    if not settings.trains_judge(iteration):
        return (), {"pairs/judge_count": 0.0}
    with context.clock("meta_judge"):
        targets, target_drops = phases.meta_targets(context.by_id, responded.records, judged.records)
        targets, too_long = phases.fitting_targets(policy, targets, settings.judge_prompt)
        verdicts = context.verdict_stage(
            "meta_judgments",
            MetaJudgmentRecord,
            lambda share: phases.meta_judge(policy, settings, iteration, share),
            targets,
            phases.JudgingRole.meta_judge(settings).line,
        )
    cap = settings.judgment_cap_for(iteration)
    selected, weights = judge_pairs(
        targets, verdicts.records, cap, settings.elo_l2, settings.unfinished, settings.judge_prompt
    )
    judge = fitting_pairs(selected, oversize)
    return judge.items, meta_stats(verdicts, judge, merge_drops(target_drops, too_long), weights, judged.records)
