"""The three generation phases of an iteration: respond (actor), judge, meta-judge.

Each phase turns records into records and returns what it dropped; seeds come from (seed, role, iteration,
prompt, sample), so a phase's output does not depend on batch size or on the other requests in a batch.
A prompt longer than the generation limit is never cut (its head holds the chat header, the rubric and the
question): the item is left out and counted as `prompt_too_long`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from metareward.core.judge_pairs import highest_variance_response, ordered_pairs
from metareward.core.parsing import parse_score, parse_winner
from metareward.core.prompts import (
    SCORE_CHOICES,
    SCORE_CUE,
    WINNER_CHOICES,
    WINNER_CUE,
    render_judge_prompt,
    render_meta_judge_prompt,
)
from metareward.core.seeding import derive_seed
from metareward.engine.judging import (
    SCORE_TAIL,
    WINNER_TAIL,
    read_scores,
    read_verdicts,
    reads_from_generation,
    score_contexts,
    winner_contexts,
)
from metareward.engine.policy import Policy
from metareward.engine.settings import EngineSettings, RoleSettings
from metareward.generation.sampler import Generation, GenerationRequest
from metareward.model.chat import encode_prompt, render_prompt
from metareward.records import JudgmentRecord, MetaJudgmentRecord, PromptRecord, ResponseRecord


@dataclass(frozen=True)
class PhaseResult:
    records: list
    drops: dict[str, int]
    parse_failures: int = 0


PROMPT_TOO_LONG = "prompt_too_long"


def fits(policy: Policy, prompt: str) -> bool:
    """Whether a rendered prompt fits the generation limit (`Policy.max_prompt_tokens`)."""
    return len(encode_prompt(policy.tokenizer, prompt)) <= policy.max_prompt_tokens


def respond(policy: Policy, settings: EngineSettings, iteration: int, prompts: Sequence[PromptRecord]) -> PhaseResult:
    """K actor responses per prompt; empty answers and (optionally) repeated answers are dropped and counted, and so
    are the K answers of a prompt too long to generate from (`prompt_too_long`)."""
    rendered = {prompt.id: render_prompt(policy.tokenizer, prompt.instruction) for prompt in prompts}
    kept = [prompt for prompt in prompts if fits(policy, rendered[prompt.id])]
    drops = Counter(
        {PROMPT_TOO_LONG: (len(prompts) - len(kept)) * settings.num_responses} if len(kept) < len(prompts) else {}
    )
    requests = [
        GenerationRequest(
            key=(prompt.id, k),
            prompt=rendered[prompt.id],
            seed=derive_seed(settings.seed, "actor", iteration, prompt.id, k),
        )
        for prompt in kept
        for k in range(settings.num_responses)
    ]
    generations = policy.generate("actor", requests, settings.actor, desc=f"iteration {iteration}: responses")
    records, seen = [], set()
    for generation in generations:
        prompt_id, k = generation.key
        text = generation.text.strip()
        if not text:
            drops["empty"] += 1
            continue
        if settings.drop_duplicate_responses and (prompt_id, text) in seen:
            drops["duplicate"] += 1
            continue
        seen.add((prompt_id, text))
        records.append(ResponseRecord(prompt_id, k, text, generation.num_tokens, generation.finished))
    return PhaseResult(records, dict(drops))


def judge(
    policy: Policy,
    settings: EngineSettings,
    iteration: int,
    prompts: Mapping[str, PromptRecord],
    responses: Sequence[ResponseRecord],
) -> PhaseResult:
    """N judgments per response, each read as a 0-5 score in the configured score mode. A response whose judge
    prompt is too long gets no judgments (counted as `prompt_too_long` judgments), so it forms no actor pair."""
    judge_prompt = {
        (r.prompt_id, r.index): render_prompt(
            policy.tokenizer, render_judge_prompt(prompts[r.prompt_id].instruction, r.text)
        )
        for r in responses
    }
    judged = [r for r in responses if fits(policy, judge_prompt[(r.prompt_id, r.index)])]
    too_long = (len(responses) - len(judged)) * settings.num_judgments
    keyed = [(response, j) for response in judged for j in range(settings.num_judgments)]
    rendered = [judge_prompt[(r.prompt_id, r.index)] for r, _ in keyed]
    requests = [
        GenerationRequest(
            key=i, prompt=text, seed=derive_seed(settings.seed, "judge", iteration, r.prompt_id, r.index, j)
        )
        for i, (text, (r, j)) in enumerate(zip(rendered, keyed))
    ]
    cue = policy.cue_read(SCORE_CUE + " ", SCORE_CHOICES) if settings.score_mode != "parse" else None
    generations = policy.generate("judge", requests, settings.judge, f"iteration {iteration}: judge", cue)
    texts = [g.text for g in generations]
    contexts = score_contexts(rendered, texts, settings.score_mode)
    probabilities = _choice_reads(
        policy,
        "judge",
        settings.judge,
        contexts,
        generations,
        SCORE_TAIL,
        SCORE_CHOICES,
        f"iteration {iteration}: scores",
    )
    readings = read_scores(texts, settings.score_mode, probabilities)
    records = [
        JudgmentRecord(r.prompt_id, r.index, j, reading.text, reading.value, reading.source, g.finished)  # type: ignore[arg-type]
        for (r, j), reading, g in zip(keyed, readings, generations)
    ]
    invalid = sum(record.score is None for record in records)
    failures = sum(parse_score(text) is None for text in texts)
    drops = {"no_valid_score": invalid, PROMPT_TOO_LONG: too_long}
    return PhaseResult(records, {reason: n for reason, n in drops.items() if n}, parse_failures=failures)


def _choice_reads(
    policy: Policy,
    role: str,
    settings: RoleSettings,
    contexts: Mapping[int, str],
    generations: Sequence[Generation],
    tail: re.Pattern[str],
    choices: Sequence[str],
    desc: str,
) -> dict[int, np.ndarray]:
    """Index -> choice probabilities for every context: read during generation where it could be, the rest with
    a forward pass over the context."""
    found = reads_from_generation(contexts, generations, tail)
    rest = {i: context for i, context in contexts.items() if i not in found}
    found.update(zip(rest, policy.choose(role, list(rest.values()), choices, settings.batch_size, desc)))
    return found


@dataclass(frozen=True)
class MetaTarget:
    """The response of one prompt whose judgments the meta-judge compares, and those (valid) judgments."""

    prompt: PromptRecord
    response: ResponseRecord
    judgments: tuple[JudgmentRecord, ...]


def meta_targets(
    prompts: Mapping[str, PromptRecord],
    responses: Sequence[ResponseRecord],
    judgments: Sequence[JudgmentRecord],
) -> tuple[list[MetaTarget], dict[str, int]]:
    """Per prompt, the response whose valid judgment scores vary most (METHOD step 5)."""
    valid: dict[tuple[str, int], list[JudgmentRecord]] = {}
    for judgment in judgments:
        if judgment.score is not None:
            valid.setdefault((judgment.prompt_id, judgment.response_index), []).append(judgment)
    by_prompt: dict[str, list[ResponseRecord]] = {}
    for response in responses:
        by_prompt.setdefault(response.prompt_id, []).append(response)
    targets, drops = [], Counter()
    for prompt_id, candidates in by_prompt.items():
        scores = [[j.score for j in valid.get((prompt_id, r.index), [])] for r in candidates]
        best = highest_variance_response(scores)
        if best is None:
            drops["too_few_judgments"] += 1
            continue
        response = candidates[best]
        targets.append(MetaTarget(prompts[prompt_id], response, tuple(valid[(prompt_id, response.index)])))
    return targets, dict(drops)


def meta_prompt(policy: Policy, target: MetaTarget, first: int, second: int) -> str:
    """The rendered meta-judge prompt showing judgment `first` as "Judgment A" and `second` as "Judgment B"."""
    return render_prompt(
        policy.tokenizer,
        render_meta_judge_prompt(
            target.prompt.instruction, target.response.text, target.judgments[first].text, target.judgments[second].text
        ),
    )


def fitting_targets(policy: Policy, targets: Sequence[MetaTarget]) -> tuple[list[MetaTarget], dict[str, int]]:
    """The targets all of whose meta-judge prompts fit the generation limit; the others are dropped and counted
    (a Bradley-Terry fit over part of the battles would rank the judgments on unequal evidence)."""
    kept = [
        t
        for t in targets
        if all(fits(policy, meta_prompt(policy, t, m, n)) for m, n in ordered_pairs(len(t.judgments)))
    ]
    return kept, ({PROMPT_TOO_LONG: len(targets) - len(kept)} if len(kept) < len(targets) else {})


def meta_judge(policy: Policy, settings: EngineSettings, iteration: int, targets: Sequence[MetaTarget]) -> PhaseResult:
    """Every ordered pair (m, n) of each target's judgments, judgment m shown first as "Judgment A".

    Every prompt must fit the generation limit: filter the targets with `fitting_targets` first."""
    keyed = [(target, m, n) for target in targets for m, n in ordered_pairs(len(target.judgments))]
    rendered = [meta_prompt(policy, t, m, n) for t, m, n in keyed]
    requests = [
        GenerationRequest(
            key=i,
            prompt=text,
            seed=derive_seed(settings.seed, "meta", iteration, t.prompt.id, t.response.index, m, n),
        )
        for i, (text, (t, m, n)) in enumerate(zip(rendered, keyed))
    ]
    cue = policy.cue_read(WINNER_CUE + " ", WINNER_CHOICES) if settings.verdict_mode != "parse" else None
    gens = policy.generate("meta_judge", requests, settings.meta_judge, f"iteration {iteration}: meta-judge", cue)
    texts = [g.text for g in gens]
    contexts = winner_contexts(rendered, texts, settings.verdict_mode)
    probabilities = _choice_reads(
        policy,
        "meta_judge",
        settings.meta_judge,
        contexts,
        gens,
        WINNER_TAIL,
        WINNER_CHOICES,
        f"iteration {iteration}: verdicts",
    )
    readings = read_verdicts(texts, settings.verdict_mode, probabilities)
    records = [
        MetaJudgmentRecord(
            t.prompt.id,
            t.response.index,
            t.judgments[m].index,
            t.judgments[n].index,
            reading.text,
            int(reading.value or 0),
            reading.source,
            reading.log_odds,  # type: ignore[arg-type]
        )
        for (t, m, n), reading in zip(keyed, readings)
    ]
    failures = sum(parse_winner(text) is None for text in texts)
    unreadable = sum(reading.value is None for reading in readings)
    return PhaseResult(records, {"unreadable": unreadable} if unreadable else {}, parse_failures=failures)
