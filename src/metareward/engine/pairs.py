"""From judged records to preference pairs: actor pairs by the configured strategy, judge pairs by Elo.

A response or judgment that hit its token limit is unfinished. With `unfinished="drop"` (the default) it never
becomes a side of a pair: unfinished responses are left out before the actor pair is chosen, and a judge pair with
an unfinished side is dropped (`unfinished`); with `"keep"` it is trained without an end-of-turn token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from metareward.core.actor_pairs import ScoredResponse, select_actor_pairs, select_anchored_pairs
from metareward.core.drops import CHOSEN_TOO_LONG, Selection, merge_drops
from metareward.core.elo import bradley_terry_elo
from metareward.core.judge_pairs import battle_matrix, mean_valid_score, positional_weights, select_judge_pair
from metareward.core.pair_labels import LabelEvidence, PairLabels, ScoreDistribution
from metareward.core.prompts import ADDITIVE_FIVE_POINT, JudgePrompt
from metareward.engine.phases import MetaTarget
from metareward.storage.records import JudgmentRecord, MetaJudgmentRecord, PairRecord, PromptRecord, ResponseRecord

UNFINISHED = "unfinished"


def pair_candidates(
    responses: Sequence[ResponseRecord], judgments: Sequence[JudgmentRecord], unfinished: str
) -> tuple[dict[str, list[ScoredResponse]], int]:
    """`scored_responses` over the responses that may become a side of an actor pair, and how many unfinished ones
    were left out. Every prompt keeps its entry, so one left with fewer than two candidates is a counted drop."""
    kept = [r for r in responses if r.finished or unfinished == "keep"]
    per_prompt: dict[str, list[ScoredResponse]] = {r.prompt_id: [] for r in responses}
    per_prompt.update(scored_responses(kept, judgments))
    return per_prompt, len(responses) - len(kept)


def scored_responses(
    responses: Sequence[ResponseRecord], judgments: Sequence[JudgmentRecord]
) -> dict[str, list[ScoredResponse]]:
    """Prompt id -> its responses, each scored by the mean of its valid judgment scores (METHOD step 3; None when
    it has none)."""
    means = mean_scores(judgments)
    per_prompt: dict[str, list[ScoredResponse]] = {}
    for r in responses:
        per_prompt.setdefault(r.prompt_id, []).append(
            ScoredResponse(r.index, r.text, means.get((r.prompt_id, r.index)))
        )
    return per_prompt


def actor_pairs(
    prompts: Mapping[str, PromptRecord],
    per_prompt: Mapping[str, Sequence[ScoredResponse]],
    rho: float,
    strategy: str,
    finished: Mapping[tuple[str, int], bool] | None = None,
    anchors: Mapping[str, Sequence[ScoredResponse]] | None = None,
    reasoning: Mapping[tuple[str, int], str] | None = None,
) -> Selection[PairRecord]:
    """One pair per prompt; `finished` maps (prompt id, response index) to whether that response ended by itself,
    `reasoning` to a thinking model's reasoning before it (trained with it). With `anchors` (anchored rejections)
    the rejected side is picked from each prompt's anchor answers."""
    if anchors is None:
        selection = select_actor_pairs(per_prompt, rho=rho, strategy=strategy)
    else:
        selection = select_anchored_pairs(per_prompt, anchors, rho=rho, strategy=strategy)
    done, thought = finished or {}, reasoning or {}
    pairs = tuple(
        PairRecord(
            kind="actor",
            prompt_id=choice.prompt_id,
            prompt=prompts[choice.prompt_id].instruction,
            system=prompts[choice.prompt_id].system,
            chosen=choice.chosen_text,
            rejected=choice.rejected_text,
            chosen_score=choice.chosen_score,
            rejected_score=choice.rejected_score,
            chosen_finished=done.get((choice.prompt_id, choice.chosen_index), True),
            rejected_finished=done.get((choice.prompt_id, choice.rejected_index), True),
            chosen_index=choice.chosen_index,
            rejected_index=choice.rejected_index,
            chosen_reasoning=thought.get((choice.prompt_id, choice.chosen_index), ""),
            rejected_reasoning=thought.get((choice.prompt_id, choice.rejected_index), ""),
        )
        for choice in selection.items
    )
    return Selection(pairs, selection.drops)


def capped_chosen(selection: Selection[PairRecord], max_chars: int | None) -> Selection[PairRecord]:
    """The actor pairs whose chosen answer has at most `max_chars` characters (None: every pair); the others are
    dropped and counted as `chosen_too_long`."""
    if max_chars is None:
        return selection
    kept = tuple(pair for pair in selection.items if len(pair.chosen) <= max_chars)
    too_long = len(selection.items) - len(kept)
    return Selection(kept, merge_drops(selection.drops, {CHOSEN_TOO_LONG: too_long} if too_long else {}))


def label_evidence(
    judgments: Sequence[JudgmentRecord],
    score_values: Sequence[float],
    previous_judgments: Sequence[JudgmentRecord] | None = None,
) -> LabelEvidence:
    """Each judged response's distribution of its mean score over its valid judgments, a written score as a
    point mass and a probability read as the judge's probabilities over the scale `score_values`; and its mean
    valid score under the current judge and (given its `previous_judgments`) under the previous one."""
    previous = None if previous_judgments is None else mean_scores(previous_judgments)
    return LabelEvidence(_distributions(judgments, score_values), mean_scores(judgments), previous)


def mean_scores(judgments: Sequence[JudgmentRecord]) -> dict[tuple[str, int], float]:
    """(prompt id, response index) -> the mean of the response's valid judgment scores (`mean_valid_score`), for every
    response with at least one: the one place judge scores are averaged."""
    found: dict[tuple[str, int], list[float | None]] = {}
    for judgment in judgments:
        found.setdefault((judgment.prompt_id, judgment.response_index), []).append(judgment.score)
    means = {key: mean_valid_score(scores) for key, scores in found.items()}
    return {key: mean for key, mean in means.items() if mean is not None}


def _distributions(
    judgments: Sequence[JudgmentRecord], score_values: Sequence[float]
) -> dict[tuple[str, int], ScoreDistribution]:
    parts: dict[tuple[str, int], list[ScoreDistribution]] = {}
    for judgment in judgments:
        if judgment.score is None:
            continue
        if judgment.score_probabilities is not None:
            part = ScoreDistribution.over_scale(score_values, judgment.score_probabilities)
        else:
            part = ScoreDistribution.point(judgment.score)
        parts.setdefault((judgment.prompt_id, judgment.response_index), []).append(part)
    return {key: ScoreDistribution.mean_of(found) for key, found in parts.items()}


def labelled(pairs: Sequence[PairRecord], labelling: PairLabels, evidence: LabelEvidence) -> list[PairRecord]:
    """The pairs with the labels `labelling` gives them (None leaves a pair hard)."""
    labels = labelling(pairs, evidence)
    if len(labels) != len(pairs):
        raise ValueError(f"pairs.label gave {len(labels)} labels for {len(pairs)} pairs")
    return [pair if label is None else replace(pair, label=_checked_label(label)) for pair, label in zip(pairs, labels)]


def _checked_label(label: float) -> float:
    if not 0.0 <= label <= 1.0:
        raise ValueError(f"pairs.label gave the label {label}; a preference label is a probability in [0, 1]")
    return float(label)


def judge_pairs(
    targets: Sequence[MetaTarget],
    verdicts: Sequence[MetaJudgmentRecord],
    max_judgment_chars: int | None,
    elo_l2: float,
    unfinished: str = "drop",
    judge_prompt: JudgePrompt = ADDITIVE_FIVE_POINT,
) -> tuple[Selection[PairRecord], tuple[float, float]]:
    """Positional weights pooled over the iteration, then one battle matrix and Elo fit per target.

    Returns the pairs and the weights (w1, w2) that were applied. A pair's prompt is the judge prompt the judgments
    answered: the run passes its own (`EngineSettings.judge_prompt`).
    """
    w1, w2 = positional_weights(v.verdict for v in verdicts)
    by_target: dict[tuple[str, int], dict[tuple[int, int], int]] = {}
    for v in verdicts:
        by_target.setdefault((v.prompt_id, v.response_index), {})[(v.first, v.second)] = v.verdict
    outcomes: list[PairRecord | str] = []
    for target in targets:
        position = {judgment.index: slot for slot, judgment in enumerate(target.judgments)}
        results = by_target.get((target.prompt.id, target.response.index), {})
        battles = battle_matrix(
            len(target.judgments), {(position[a], position[b]): v for (a, b), v in results.items()}, w1, w2
        )
        elo = bradley_terry_elo(battles, l2=elo_l2)
        texts = [judgment.text for judgment in target.judgments]
        choice = select_judge_pair(texts, elo, max_judgment_chars)
        if isinstance(choice, str):
            outcomes.append(choice)
            continue
        chosen, rejected = target.judgments[choice.chosen_index], target.judgments[choice.rejected_index]
        if unfinished == "drop" and not (chosen.finished and rejected.finished):
            outcomes.append(UNFINISHED)
            continue
        outcomes.append(
            PairRecord(
                kind="judge",
                prompt_id=target.prompt.id,
                prompt=judge_prompt.render_judge(target.prompt.instruction, target.response.text),
                chosen=choice.chosen_text,
                rejected=choice.rejected_text,
                chosen_score=chosen.score,
                rejected_score=rejected.score,
                chosen_finished=chosen.finished,
                rejected_finished=rejected.finished,
                chosen_reasoning=chosen.reasoning,
                rejected_reasoning=rejected.reasoning,
            )
        )
    return Selection.from_outcomes(outcomes), (w1, w2)


def fitting_pairs(
    selection: Selection[PairRecord], oversize: Callable[[PairRecord], str | None]
) -> Selection[PairRecord]:
    """The selected pairs that fit the DPO token limits; `oversize` names why one does not (`prompt_too_long`,
    `completion_too_long`) and such pairs are dropped and counted with the selection's own drops, never cut."""
    fit = Selection.from_outcomes([oversize(pair) or pair for pair in selection.items])
    return Selection(fit.items, merge_drops(selection.drops, fit.drops))
