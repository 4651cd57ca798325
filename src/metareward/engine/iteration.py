"""One iteration of data making with M_t: prompts -> responses -> judgments -> meta-judgments -> pairs.

Every stage is written to the iteration's directory as JSON Lines (atomically) as soon as it is done, so a run
can be inspected stage by stage. Returns the pairs and flat, namespaced statistics for the logger and summary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from metareward.core.consistency import dataset_consistency
from metareward.core.drops import Selection, merge_drops
from metareward.core.pair_labels import LabelEvidence, prompt_consistencies
from metareward.engine import phases
from metareward.engine.comparing import comparer
from metareward.engine.judge_history import JudgeHistory
from metareward.engine.judging import calibrate_verdicts
from metareward.engine.pairs import (
    actor_pairs,
    fitting_pairs,
    judge_pairs,
    label_evidence,
    label_stats,
    labelled,
    meta_bias_stats,
    pair_candidates,
)
from metareward.engine.prompt_pool import PromptPool
from metareward.engine.settings import EngineSettings
from metareward.engine.sharding import Shard
from metareward.engine.stages import StageStore
from metareward.engine.timing import Stopwatch
from metareward.generation.policy import Policy
from metareward.storage.artifacts import write_json, write_records
from metareward.storage.records import JudgmentRecord, MetaJudgmentRecord, PairRecord, PhaseResult, ResponseRecord

log = logging.getLogger(__name__)


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


def iteration_dir(run_dir: Path, iteration: int) -> Path:
    return run_dir / "iterations" / f"iter_{iteration:02d}"


ONE_PROCESS = Shard()  # a run without distributed training: rank 0 of 1


def make_iteration_data(
    policy: Policy,
    settings: EngineSettings,
    pool: PromptPool,
    iteration: int,
    run_dir: Path,
    reuse: bool = False,
    shard: Shard = ONE_PROCESS,
    oversize: Callable[[PairRecord], str | None] = lambda pair: None,
    history: JudgeHistory | None = None,
) -> IterationData:
    """Make iteration t's pairs with the policy as it is now (M_t).

    `oversize` says why a pair does not fit the DPO token limits (the collator's check); such pairs are dropped and
    counted like every other drop, so nothing is cut at training time.

    With `reuse`, stages whose files a previous (interrupted) attempt finished are read back instead of redone;
    per-request seeds make a redone stage identical to the one an uninterrupted run would have written.
    With several processes, each makes its `shard` of every phase and all of them end with the same records.
    A labelling that reads the previous iteration's judge (CREAM) needs the run's judge `history`.
    """
    out = iteration_dir(run_dir, iteration)
    reads_previous = settings.pair_labels.reads_previous_judge
    if reads_previous and history is None:
        raise ValueError(f"{type(settings.pair_labels).__name__} compares judges of two iterations: pass the history")
    if reads_previous and shard.writes:
        history.save(out)  # type: ignore[union-attr]  # M_t's judge, for iteration t + 1
    store = StageStore(out, reuse, write=shard.writes)
    clock = Stopwatch()
    prompts = pool.sample(iteration, settings.prompts_per_iteration, settings.seed)
    prompts_by_id = {p.id: p for p in prompts}
    position = {p.id: i for i, p in enumerate(prompts)}
    if shard.writes:
        write_records(out / "prompts.jsonl", prompts)

    with clock("generate"):
        responded = store.run(
            "responses",
            ResponseRecord,
            lambda: shard.gather(
                phases.respond(policy, settings, iteration, shard.take(prompts)),
                lambda r: (position[r.prompt_id], r.index),
            ),
        )
    with clock("judge"):
        judged = store.run(
            "judgments",
            JudgmentRecord,
            lambda: shard.gather(
                phases.judge(policy, settings, iteration, prompts_by_id, shard.take(responded.records)),
                lambda j: (position[j.prompt_id], j.response_index, j.index),
            ),
        )

    anchored = None
    if settings.rejections.anchor_role is not None:
        with clock("anchors"):
            anchored = _anchor_stages(policy, settings, iteration, prompts, store, shard)

    every_response = list(responded.records) + (list(anchored[0].records) if anchored else [])
    previous = None
    previous_folder = iteration_dir(run_dir, iteration - 1)
    if reads_previous and iteration > 1 and history.saved(previous_folder):  # type: ignore[union-attr]
        with clock("previous_judge"), history.lent(previous_folder):  # type: ignore[union-attr]
            previous = store.run(
                "previous_judgments",
                JudgmentRecord,
                lambda: shard.gather(
                    phases.judge(
                        policy, settings, iteration, prompts_by_id, shard.take(every_response), "previous judge"
                    ),
                    lambda j: (position[j.prompt_id], j.response_index, j.index),
                ),
            )

    rho = settings.rho_for(iteration)
    candidates, unfinished = pair_candidates(responded.records, judged.records, settings.unfinished)
    every_judgment = list(judged.records)
    anchors, anchors_unfinished = None, 0
    if anchored is not None:
        anchors, anchors_unfinished = pair_candidates(anchored[0].records, anchored[1].records, settings.unfinished)
        every_judgment += anchored[1].records
    # judge/ranking: mean scores as they are (pointwise), or scores from comparisons the ranking asks for (pairwise).
    ranked = settings.ranking.rank(candidates, comparer(policy, settings, iteration, prompts, store, shard, clock))
    candidates = ranked.candidates
    finished = {(r.prompt_id, r.index): r.finished for r in every_response}
    selected = actor_pairs(prompts_by_id, candidates, rho, settings.pair_strategy, finished, anchors)
    actor = _fitting(selected, oversize)
    evidence = label_evidence(
        every_judgment, settings.judge_prompt.score_values, previous.records if previous is not None else None
    )
    actor = Selection(tuple(labelled(actor.items, settings.pair_labels, evidence)), actor.drops)
    stats = _base_stats(prompts, responded, judged, actor, rho)
    stats["actor/unfinished_excluded"] = float(unfinished)
    stats.update(ranked.stats)
    stats.update(label_stats(actor.items))
    if anchored is not None:
        stats.update(_anchor_stats(*anchored))
        stats["anchor/unfinished_excluded"] = float(anchors_unfinished)
    if reads_previous:
        stats.update(_previous_judge_stats(previous, evidence))

    pairs = list(actor.items)
    if settings.trains_judge(iteration):
        with clock("meta_judge"):
            targets, target_drops = phases.meta_targets(prompts_by_id, responded.records, judged.records)
            targets, too_long = phases.fitting_targets(policy, targets, settings.judge_prompt)
            target_drops = merge_drops(target_drops, too_long)
            verdicts = store.run(
                "meta_judgments",
                MetaJudgmentRecord,
                lambda: calibrated(
                    shard.gather(
                        phases.meta_judge(policy, settings, iteration, shard.take(targets)),
                        lambda v: (position[v.prompt_id], v.first, v.second),
                    ),
                    settings,
                ),
            )
        selected_judge, (w1, w2) = judge_pairs(
            targets,
            verdicts.records,
            settings.judgment_cap_for(iteration),
            settings.elo_l2,
            settings.unfinished,
            settings.judge_prompt,
        )
        judge = _fitting(selected_judge, oversize)
        pairs.extend(judge.items)
        stats.update(_meta_stats(verdicts, judge, target_drops, w1, w2))
        stats.update(meta_bias_stats(verdicts.records, judged.records))
    else:
        stats["pairs/judge_count"] = 0.0

    stats.update({f"time/{name}": seconds for name, seconds in clock.seconds.items()})
    stats["data/stages_reused"] = float(len(store.reused))
    if shard.writes:
        write_records(out / "pairs.jsonl", pairs)
        write_json(out / "stats.json", stats)
    log.info(
        "iteration %d: %d actor pairs, %d judge pairs (dropped: %s)",
        iteration,
        int(stats["pairs/actor_count"]),
        int(stats["pairs/judge_count"]),
        {k.split("/", 1)[1]: int(v) for k, v in stats.items() if "dropped/" in k} or "none",
    )
    return IterationData(iteration, pairs, stats)


def _anchor_stages(
    policy: Policy,
    settings: EngineSettings,
    iteration: int,
    prompts: Sequence,
    store: StageStore,
    shard: Shard,
) -> tuple[PhaseResult, PhaseResult]:
    """The anchor role's answers to the iteration's prompts (numbered after the actor's K) and the current judge's
    judgments of them, each a stage of its own (anchor_responses.jsonl, anchor_judgments.jsonl)."""
    rejections = settings.rejections
    answering = phases.Answering(
        role=str(rejections.anchor_role),
        count=rejections.anchors(settings.num_responses),
        first_index=settings.num_responses,
        label=f"{rejections.anchor_role} anchor responses",
    )
    position = {p.id: i for i, p in enumerate(prompts)}
    prompts_by_id = {p.id: p for p in prompts}
    responded = store.run(
        "anchor_responses",
        ResponseRecord,
        lambda: shard.gather(
            phases.respond(policy, settings, iteration, shard.take(prompts), answering),
            lambda r: (position[r.prompt_id], r.index),
        ),
    )
    judged = store.run(
        "anchor_judgments",
        JudgmentRecord,
        lambda: shard.gather(
            phases.judge(policy, settings, iteration, prompts_by_id, shard.take(responded.records)),
            lambda j: (position[j.prompt_id], j.response_index, j.index),
        ),
    )
    return responded, judged


def _anchor_stats(responded, judged) -> dict[str, float]:
    responses, judgments = responded.records, judged.records
    stats = {
        "anchor/responses": float(len(responses)),
        "anchor/mean_chars": _mean([len(r.text) for r in responses]),
        "anchor/unfinished_rate": _mean([not r.finished for r in responses]),
        "anchor/judge_mean_score": _mean([j.score for j in judgments if j.score is not None]),
        "anchor/judge_parse_failures": float(judged.parse_failures),
    }
    stats.update({f"anchor/dropped/{reason}": float(n) for reason, n in responded.drops.items()})
    stats.update({f"anchor/judge_dropped/{reason}": float(n) for reason, n in judged.drops.items()})
    return stats


def _previous_judge_stats(previous: PhaseResult | None, evidence: LabelEvidence) -> dict[str, float]:
    """Whether the previous iteration's judge judged this iteration's responses, and how its ranking agreed."""
    stats = {"previous_judge/available": float(previous is not None)}
    if previous is None or evidence.previous_scores is None:
        return stats
    judgments = previous.records
    per_prompt = prompt_consistencies(evidence.scores, evidence.previous_scores)
    agreement = dataset_consistency(per_prompt.values())
    stats.update(
        {
            "previous_judge/judgments": float(len(judgments)),
            "previous_judge/parse_failures": float(previous.parse_failures),
            "previous_judge/mean_score": _mean([j.score for j in judgments if j.score is not None]),
            "previous_judge/prompts_ranked": float(sum(c is not None for c in per_prompt.values())),
        }
    )
    if agreement is not None:
        stats["previous_judge/consistency"] = agreement
    stats.update({f"previous_judge/dropped/{reason}": float(n) for reason, n in previous.drops.items()})
    return stats


def _fitting(selection: Selection[PairRecord], oversize: Callable[[PairRecord], str | None]) -> Selection[PairRecord]:
    fit = fitting_pairs(selection.items, oversize)
    return Selection(fit.items, merge_drops(selection.drops, fit.drops))


def calibrated(verdicts: PhaseResult, settings: EngineSettings) -> PhaseResult:
    """Position calibration over the whole iteration's verdicts (after gathering every rank's share), when on."""
    if not settings.calibrate_position:
        return verdicts
    records = calibrate_verdicts(verdicts.records, settings.judge_prompt)
    return PhaseResult(records, verdicts.drops, verdicts.parse_failures)


def _base_stats(prompts, responded, judged, actor, rho: float) -> dict[str, float]:
    responses, judgments = responded.records, judged.records
    stats: dict[str, float] = {
        "data/prompts": float(len(prompts)),
        "actor/responses": float(len(responses)),
        "actor/mean_chars": _mean([len(r.text) for r in responses]),
        "actor/unfinished_rate": _mean([not r.finished for r in responses]),
        "judge/judgments": float(len(judgments)),
        "judge/parse_failures": float(judged.parse_failures),
        "judge/parse_failure_rate": judged.parse_failures / max(len(judgments), 1),
        "judge/unfinished_rate": _mean([not j.finished for j in judgments]),
        "judge/probability_reads": float(sum(j.score_source == "probability" for j in judgments)),
        "judge/mean_score": _mean([j.score for j in judgments if j.score is not None]),
        "pairs/rho": rho,
        "pairs/actor_count": float(len(actor.items)),
        "pairs/actor_chosen_chars": _mean([len(p.chosen) for p in actor.items]),
        "pairs/actor_rejected_chars": _mean([len(p.rejected) for p in actor.items]),
    }
    stats.update({f"actor/dropped/{reason}": float(n) for reason, n in responded.drops.items()})
    stats.update({f"judge/dropped/{reason}": float(n) for reason, n in judged.drops.items()})
    stats.update({f"pairs/actor_dropped/{reason}": float(n) for reason, n in actor.drops.items()})
    return stats


def _meta_stats(verdicts, judge, target_drops, w1: float, w2: float) -> dict[str, float]:
    records = verdicts.records
    stats = {
        "meta/verdicts": float(len(records)),
        "meta/parse_failures": float(verdicts.parse_failures),
        "meta/parse_failure_rate": verdicts.parse_failures / max(len(records), 1),
        "meta/ties": float(sum(v.verdict == 0 for v in records)),
        "meta/w1": w1,
        "meta/w2": w2,
        "pairs/judge_count": float(len(judge.items)),
    }
    drops = {**target_drops, **judge.drops}
    stats.update({f"pairs/judge_dropped/{reason}": float(n) for reason, n in drops.items()})
    return stats


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else 0.0
