"""The three generation phases of an iteration: respond (actor), judge, meta-judge.

Each phase turns records into records and returns what it dropped; seeds come from (seed, role, iteration,
prompt, sample), so a phase's output does not depend on batch size or on the other requests in a batch.
A prompt longer than the generation limit is never cut (its head holds the chat header, the rubric and the
question): the item is left out and counted as `prompt_too_long`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from metareward.core.judge_pairs import highest_variance_response, ordered_pairs
from metareward.core.prompts import ADDITIVE_FIVE_POINT, JudgePrompt
from metareward.core.seeding import derive_seed
from metareward.engine.judging import (
    FinalLine,
    Reading,
    choice_contexts,
    read_scores,
    read_verdicts,
    reads_from_generation,
    score_line,
    winner_line,
)
from metareward.engine.settings import EngineSettings
from metareward.generation.policy import Policy
from metareward.generation.sampler import Generation, GenerationRequest, RoleSettings
from metareward.model.chat import encode_prompt, render_prompt
from metareward.storage.records import JudgmentRecord, MetaJudgmentRecord, PhaseResult, PromptRecord, ResponseRecord

PROMPT_TOO_LONG = "prompt_too_long"
NO_ANSWER_AFTER_REASONING = "no_answer_after_reasoning"


def fits(policy: Policy, prompt: str) -> bool:
    """Whether a rendered prompt fits the generation limit (`Policy.max_prompt_tokens`)."""
    return len(encode_prompt(policy.tokenizer, prompt)) <= policy.max_prompt_tokens


@dataclass(frozen=True)
class Answering:
    """Who answers the prompts: the actor (M_t, K answers numbered 0..K-1), or an anchor role such as the seed
    model M0 (anchored rejections), whose answers are numbered from `first_index` so that no (prompt, index) key
    is shared with the actor's, and seeded by the role's name."""

    role: str = "actor"
    count: int | None = None  # None: actor.num_responses
    first_index: int = 0
    label: str = "responses"


def respond(
    policy: Policy,
    settings: EngineSettings,
    iteration: int,
    prompts: Sequence[PromptRecord],
    answering: Answering = Answering(),
) -> PhaseResult:
    """K actor responses per prompt; empty answers and (optionally) repeated answers are dropped and counted, and so
    are the K answers of a prompt too long to generate from (`prompt_too_long`)."""
    count = answering.count or settings.num_responses
    rendered = {prompt.id: render_prompt(policy.tokenizer, prompt.instruction, prompt.system) for prompt in prompts}
    kept = [prompt for prompt in prompts if fits(policy, rendered[prompt.id])]
    drops = Counter({PROMPT_TOO_LONG: (len(prompts) - len(kept)) * count} if len(kept) < len(prompts) else {})
    requests = [
        GenerationRequest(
            key=(prompt.id, answering.first_index + k),
            prompt=rendered[prompt.id],
            seed=derive_seed(settings.seed, answering.role, iteration, prompt.id, k),
        )
        for prompt in kept
        for k in range(count)
    ]
    desc = f"iteration {iteration}: {answering.label}"
    generations = policy.generate(answering.role, requests, settings.actor, desc=desc)
    records, seen = [], set()
    for generation in generations:
        prompt_id, k = generation.key
        text = generation.text.strip()
        if not text:  # a thinking model cut off in its reasoning has not begun its answer
            drops[NO_ANSWER_AFTER_REASONING if generation.reasoning else "empty"] += 1
            continue
        if settings.drop_duplicate_responses and (prompt_id, text) in seen:
            drops["duplicate"] += 1
            continue
        seen.add((prompt_id, text))
        records.append(
            ResponseRecord(prompt_id, k, text, generation.num_tokens, generation.finished, generation.reasoning)
        )
    return PhaseResult(records, dict(drops))


@dataclass(frozen=True)
class JudgingRole:
    """How a judging role's answers are generated and read: the judge's scores, the meta-judge's verdicts or the
    judge's pairwise comparisons."""

    name: str  # the role whose adapter generates: judge or meta_judge
    settings: RoleSettings  # its sampling and batch size
    mode: str  # parse | probability | hybrid
    line: FinalLine
    read: Callable[[Sequence[str], str, dict[int, np.ndarray]], list[Reading]]
    writing: str  # progress labels: of the generation and of the probability reads
    reading: str

    @classmethod
    def judge(cls, settings: EngineSettings) -> JudgingRole:
        prompt = settings.judge_prompt
        read = partial(read_scores, prompt=prompt)
        return cls("judge", settings.judge, settings.score_mode, score_line(prompt), read, "judge", "scores")

    @classmethod
    def meta_judge(cls, settings: EngineSettings) -> JudgingRole:
        prompt, mode = settings.judge_prompt, settings.verdict_mode
        line = winner_line(prompt.winner_label, prompt.winner_cue, prompt.winner_choices)
        read = partial(read_verdicts, line=line)
        return cls("meta_judge", settings.meta_judge, mode, line, read, "meta-judge", "verdicts")

    @classmethod
    def comparing(cls, settings: EngineSettings) -> JudgingRole:
        """Pairwise ranking's comparisons: made by the judge role, read as the meta-judge's verdicts are."""
        line = winner_line(settings.judge_prompt.winner_label)
        read = partial(read_verdicts, line=line)
        return cls("judge", settings.judge, settings.verdict_mode, line, read, "comparisons", "comparison verdicts")


@dataclass(frozen=True)
class Judged:
    """One reading per request, the generations they come from, and how many texts had no line to parse."""

    generations: list[Generation]
    readings: list[Reading]
    parse_failures: int


def generate_and_read(
    policy: Policy, role: JudgingRole, iteration: int, rendered: Sequence[str], seeds: Sequence[int]
) -> Judged:
    """Generate one answer per rendered prompt (request i seeded by seeds[i]) and read its final line in the role's
    mode: parsed, or from the choice probabilities after the cue, taken while generating where possible."""
    requests = [GenerationRequest(key=i, prompt=text, seed=seed) for i, (text, seed) in enumerate(zip(rendered, seeds))]
    line = role.line
    cue = policy.cue_read(line.cue + " ", line.choices) if role.mode != "parse" else None
    generations = policy.generate(role.name, requests, role.settings, f"iteration {iteration}: {role.writing}", cue)
    texts = [g.text for g in generations]
    # the line is read from the answer; a thinking model's reasoning stays in the context it was written in
    contexts = choice_contexts([p + g.reasoning for p, g in zip(rendered, generations)], texts, role.mode, line)
    probabilities = _choice_reads(policy, role, contexts, generations, f"iteration {iteration}: {role.reading}")
    failures = sum(line.parse(text) is None for text in texts)
    return Judged(list(generations), role.read(texts, role.mode, probabilities), failures)


def _choice_reads(
    policy: Policy, role: JudgingRole, contexts: Mapping[int, str], generations: Sequence[Generation], desc: str
) -> dict[int, np.ndarray]:
    """Index -> choice probabilities for every context: read during generation where it could be, the rest with
    a forward pass over the context."""
    found = reads_from_generation(contexts, generations, role.line.tail)
    rest = {i: context for i, context in contexts.items() if i not in found}
    chosen = policy.choose(role.name, list(rest.values()), role.line.choices, role.settings.batch_size, desc)
    found.update(zip(rest, chosen))
    return found


def judge(
    policy: Policy,
    settings: EngineSettings,
    iteration: int,
    prompts: Mapping[str, PromptRecord],
    responses: Sequence[ResponseRecord],
    label: str = "judge",
) -> PhaseResult:
    """N judgments per response, each read as a score on the judge prompt's scale in the configured score mode. A
    response whose judge prompt is too long gets no judgments (counted as `prompt_too_long` judgments), so it forms
    no actor pair. `label` names the pass in progress bars (the previous iteration's judge judges with the same
    seeds, so the two judges differ only by their weights)."""
    judge_prompt = {
        (r.prompt_id, r.index): render_prompt(
            policy.tokenizer, settings.judge_prompt.render_judge(prompts[r.prompt_id].instruction, r.text)
        )
        for r in responses
    }
    judged = [r for r in responses if fits(policy, judge_prompt[(r.prompt_id, r.index)])]
    too_long = (len(responses) - len(judged)) * settings.num_judgments
    keyed = [(response, j) for response in judged for j in range(settings.num_judgments)]
    rendered = [judge_prompt[(r.prompt_id, r.index)] for r, _ in keyed]
    seeds = [derive_seed(settings.seed, "judge", iteration, r.prompt_id, r.index, j) for r, j in keyed]
    role = replace(JudgingRole.judge(settings), writing=label)
    result = generate_and_read(policy, role, iteration, rendered, seeds)
    records = [
        JudgmentRecord(
            r.prompt_id,
            r.index,
            j,
            reading.text,
            reading.value,
            reading.source,  # type: ignore[arg-type]
            g.finished,
            list(reading.probabilities) if reading.probabilities is not None else None,
            g.reasoning,
        )
        for (r, j), reading, g in zip(keyed, result.readings, result.generations)
    ]
    invalid = sum(record.score is None for record in records)
    drops = {"no_valid_score": invalid, PROMPT_TOO_LONG: too_long}
    return PhaseResult(records, {reason: n for reason, n in drops.items() if n}, result.parse_failures)


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


def meta_prompt(
    policy: Policy, target: MetaTarget, first: int, second: int, judge_prompt: JudgePrompt = ADDITIVE_FIVE_POINT
) -> str:
    """The rendered meta-judge prompt showing judgment `first` as "Judgment A" and `second` as "Judgment B". The run
    passes its judge prompt (`EngineSettings.judge_prompt`); the default one serves callers without a config."""
    return render_prompt(
        policy.tokenizer,
        judge_prompt.render_meta_judge(
            target.prompt.instruction, target.response.text, target.judgments[first].text, target.judgments[second].text
        ),
    )


def fitting_targets(
    policy: Policy, targets: Sequence[MetaTarget], judge_prompt: JudgePrompt = ADDITIVE_FIVE_POINT
) -> tuple[list[MetaTarget], dict[str, int]]:
    """The targets all of whose meta-judge prompts fit the generation limit; the others are dropped and counted
    (a Bradley-Terry fit over part of the battles would rank the judgments on unequal evidence)."""
    kept = [
        t
        for t in targets
        if all(fits(policy, meta_prompt(policy, t, m, n, judge_prompt)) for m, n in ordered_pairs(len(t.judgments)))
    ]
    return kept, ({PROMPT_TOO_LONG: len(targets) - len(kept)} if len(kept) < len(targets) else {})


def meta_judge(policy: Policy, settings: EngineSettings, iteration: int, targets: Sequence[MetaTarget]) -> PhaseResult:
    """Every ordered pair (m, n) of each target's judgments, judgment m shown first as "Judgment A".

    Every prompt must fit the generation limit: filter the targets with `fitting_targets` first."""
    keyed = [(target, m, n) for target in targets for m, n in ordered_pairs(len(target.judgments))]
    rendered = [meta_prompt(policy, t, m, n, settings.judge_prompt) for t, m, n in keyed]
    seeds = [derive_seed(settings.seed, "meta", iteration, t.prompt.id, t.response.index, m, n) for t, m, n in keyed]
    result = generate_and_read(policy, JudgingRole.meta_judge(settings), iteration, rendered, seeds)
    records = [
        MetaJudgmentRecord(
            t.prompt.id,
            t.response.index,
            t.judgments[m].index,
            t.judgments[n].index,
            reading.text,
            int(reading.value or 0),
            reading.source,  # type: ignore[arg-type]
            reading.log_odds,
            g.reasoning,
        )
        for (t, m, n), reading, g in zip(keyed, result.readings, result.generations)
    ]
    unreadable = sum(reading.value is None for reading in result.readings)
    return PhaseResult(records, {"unreadable": unreadable} if unreadable else {}, result.parse_failures)
