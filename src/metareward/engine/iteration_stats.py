"""The flat, namespaced statistics of one iteration (stats.json, the logger and the summary).

One function per part of the iteration, each returning its keys in a fixed order: `actor/`, `judge/` and
`pairs/actor_*` from the actor's stages; `anchor/` from anchored rejections; `previous_judge/` from the previous
iteration's judge (CREAM); `meta/` and `pairs/judge_*` from the meta-judge; `time/` and `data/stages_reused` from the
run of the stages. Every drop a stage or a selection counted appears as `<part>/dropped/<reason>` (or the part's own
`..._dropped/` prefix).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from metareward.core.consistency import dataset_consistency
from metareward.core.drops import Selection
from metareward.core.pair_labels import prompt_consistencies
from metareward.engine.pairs import mean_scores
from metareward.engine.stages import StageStore
from metareward.engine.timing import Stopwatch
from metareward.storage.records import JudgmentRecord, MetaJudgmentRecord, PairRecord, PhaseResult, PromptRecord


def mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else 0.0


def dropped(prefix: str, drops: Mapping[str, int]) -> dict[str, float]:
    return {f"{prefix}/{reason}": float(n) for reason, n in drops.items()}


def actor_stats(
    prompts: Sequence[PromptRecord],
    responded: PhaseResult,
    judged: PhaseResult,
    actor: Selection[PairRecord],
    rho: float,
    unfinished: int,
) -> dict[str, float]:
    """The actor's responses, their judgments and the actor pairs (`unfinished`: responses left out of pairs)."""
    responses, judgments = responded.records, judged.records
    stats: dict[str, float] = {
        "data/prompts": float(len(prompts)),
        "actor/responses": float(len(responses)),
        "actor/mean_chars": mean([len(r.text) for r in responses]),
        "actor/unfinished_rate": mean([not r.finished for r in responses]),
        "judge/judgments": float(len(judgments)),
        "judge/parse_failures": float(judged.parse_failures),
        "judge/parse_failure_rate": judged.parse_failures / max(len(judgments), 1),
        "judge/unfinished_rate": mean([not j.finished for j in judgments]),
        "judge/probability_reads": float(sum(j.score_source == "probability" for j in judgments)),
        "judge/mean_score": mean([j.score for j in judgments if j.score is not None]),
        "pairs/rho": rho,
        "pairs/actor_count": float(len(actor.items)),
        "pairs/actor_chosen_chars": mean([len(p.chosen) for p in actor.items]),
        "pairs/actor_rejected_chars": mean([len(p.rejected) for p in actor.items]),
    }
    stats.update(dropped("actor/dropped", responded.drops))
    stats.update(dropped("judge/dropped", judged.drops))
    stats.update(dropped("pairs/actor_dropped", actor.drops))
    stats["actor/unfinished_excluded"] = float(unfinished)
    return stats


# Above this share of a pair kind dropped as too long for the DPO limits, the run says so in its log.
LENGTH_DROP_WARNING = 0.05
LENGTH_REASONS = ("prompt_too_long", "completion_too_long")


def data_warnings(iteration: int, stats: Mapping[str, float]) -> list[str]:
    """What the log should say about the data beyond its counts: prompts reused from earlier iterations, and pair
    kinds of which more than LENGTH_DROP_WARNING were dropped as longer than the DPO token limits."""
    found = []
    reused = int(stats.get("data/prompts_reused", 0))
    if reused:
        found.append(
            f"iteration {iteration}: {reused} of {int(stats['data/prompts'])} prompts were drawn by an earlier "
            "iteration (the prompt pool is smaller than num_iterations x data.prompts_per_iteration)"
        )
    for kind in ("actor", "judge"):
        too_long = sum(stats.get(f"pairs/{kind}_dropped/{reason}", 0) for reason in LENGTH_REASONS)
        total = too_long + stats.get(f"pairs/{kind}_count", 0)
        if total and too_long / total > LENGTH_DROP_WARNING:
            found.append(
                f"iteration {iteration}: {int(too_long)} of {int(total)} {kind} pairs ({too_long / total:.0%}) were "
                "dropped as longer than dpo.max_prompt_tokens or dpo.max_completion_tokens; raise them to train on "
                "these pairs"
            )
    return found


def label_stats(pairs: Sequence[PairRecord]) -> dict[str, float]:
    """How many actor pairs carry a soft label, their mean, and how many of them lean towards the rejected side."""
    labels = [pair.label for pair in pairs if pair.label is not None]
    stats = {"pairs/actor_soft_labels": float(len(labels))}
    if labels:
        stats["pairs/actor_label_mean"] = float(np.mean(labels))
        stats["pairs/actor_labels_below_half"] = float(sum(label < 0.5 for label in labels))
    return stats


def anchor_stats(responded: PhaseResult, judged: PhaseResult, unfinished: int) -> dict[str, float]:
    """The anchor role's answers and their judgments (anchored rejections)."""
    responses, judgments = responded.records, judged.records
    stats = {
        "anchor/responses": float(len(responses)),
        "anchor/mean_chars": mean([len(r.text) for r in responses]),
        "anchor/unfinished_rate": mean([not r.finished for r in responses]),
        "anchor/judge_mean_score": mean([j.score for j in judgments if j.score is not None]),
        "anchor/judge_parse_failures": float(judged.parse_failures),
    }
    stats.update(dropped("anchor/dropped", responded.drops))
    stats.update(dropped("anchor/judge_dropped", judged.drops))
    stats["anchor/unfinished_excluded"] = float(unfinished)
    return stats


def previous_judge_stats(previous: PhaseResult | None, judgments: Sequence[JudgmentRecord]) -> dict[str, float]:
    """Whether the previous iteration's judge judged this iteration's responses, and how its ranking agreed with the
    current judge's `judgments` of them (CREAM's consistency, `core.pair_labels.prompt_consistencies`)."""
    stats = {"previous_judge/available": float(previous is not None)}
    if previous is None:
        return stats
    stats.update(
        {
            "previous_judge/judgments": float(len(previous.records)),
            "previous_judge/parse_failures": float(previous.parse_failures),
            "previous_judge/mean_score": mean([j.score for j in previous.records if j.score is not None]),
        }
    )
    stats.update(agreement_stats("previous_judge", mean_scores(judgments), mean_scores(previous.records)))
    stats.update(dropped("previous_judge/dropped", previous.drops))
    return stats


def previous_ranking_stats(
    scores: Mapping[tuple[str, int], float], previous: Mapping[tuple[str, int], float] | None
) -> dict[str, float]:
    """Whether the ranking (made without the judge) had a version one iteration ago, and how far the two rankings
    of this iteration's responses agree (CREAM's consistency)."""
    stats = {"previous_ranking/available": float(previous is not None)}
    if previous is not None:
        stats.update(agreement_stats("previous_ranking", scores, previous))
    return stats


def agreement_stats(
    prefix: str, scores: Mapping[tuple[str, int], float], previous: Mapping[tuple[str, int], float]
) -> dict[str, float]:
    """How many prompts two rankings of the same responses both rank (`<prefix>/prompts_ranked`), and their mean
    agreement C (`<prefix>/consistency`, left out when no prompt's C is defined)."""
    per_prompt = prompt_consistencies(scores, previous)
    stats = {f"{prefix}/prompts_ranked": float(sum(c is not None for c in per_prompt.values()))}
    agreement = dataset_consistency(per_prompt.values())
    if agreement is not None:
        stats[f"{prefix}/consistency"] = agreement
    return stats


def meta_stats(
    verdicts: PhaseResult,
    judge: Selection[PairRecord],
    target_drops: Mapping[str, int],
    weights: tuple[float, float],
    judgments: Sequence[JudgmentRecord],
) -> dict[str, float]:
    """The meta-judge's verdicts, the positional `weights` (w1, w2) applied to them, the judge pairs, and the
    meta-judge's biases over the judge's `judgments` (`meta_bias_stats`)."""
    records = verdicts.records
    stats = {
        "meta/verdicts": float(len(records)),
        "meta/parse_failures": float(verdicts.parse_failures),
        "meta/parse_failure_rate": verdicts.parse_failures / max(len(records), 1),
        "meta/ties": float(sum(v.verdict == 0 for v in records)),
        "meta/w1": weights[0],
        "meta/w2": weights[1],
        "pairs/judge_count": float(len(judge.items)),
    }
    stats.update(dropped("pairs/judge_dropped", {**target_drops, **judge.drops}))
    stats.update(meta_bias_stats(records, judgments))
    return stats


def meta_bias_stats(verdicts: Sequence[MetaJudgmentRecord], judgments: Sequence[JudgmentRecord]) -> dict[str, float]:
    """Meta-judge biases (Wu et al. 2024, Sec. 4): preference for the first slot and for the higher score.

    positional_bias: share of decisive verdicts won by the first-shown judgment.
    prefers_higher_score: among decisive verdicts between judgments with different scores, the share won by the
    higher-scored judgment.
    """
    score = {(j.prompt_id, j.response_index, j.index): j.score for j in judgments}
    decisive = [v for v in verdicts if v.verdict != 0]
    stats: dict[str, float] = {}
    if decisive:
        stats["meta/positional_bias"] = float(np.mean([v.verdict == 1 for v in decisive]))
    higher = []
    for v in decisive:
        first = score.get((v.prompt_id, v.response_index, v.first))
        second = score.get((v.prompt_id, v.response_index, v.second))
        if first is None or second is None or first == second:
            continue
        winner_first = v.verdict == 1
        higher.append(winner_first == (first > second))
    if higher:
        stats["meta/prefers_higher_score"] = float(np.mean(higher))
    return stats


def run_stats(clock: Stopwatch, store: StageStore) -> dict[str, float]:
    """Wall time per part of the iteration, and how many stages a resumed run read back instead of redoing."""
    stats = {f"time/{name}": seconds for name, seconds in clock.seconds.items()}
    stats["data/stages_reused"] = float(len(store.reused))
    return stats
