"""The actor's log-likelihoods of the iteration's answers, now and as earlier iterations began, for the rankings that
read them (`judge/ranking=implicit_reward`).

Each version is a stage of its own, kept and reused on resume like every other: `likelihoods` (M_t, the actor as it
is), `previous_likelihoods` (M_t-1, the actor saved as iteration t - 1 began, or before the warm start for iteration
1) and `earlier_likelihoods` (M_t-2). An answer is scored as DPO would train it (`model.chat.encode_answer`): its
rendered prompt, then its reasoning and text, then the end-of-turn token where it ended by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext

from metareward.core.implicit_reward import Likelihood
from metareward.core.pair_labels import ResponseKey
from metareward.engine.context import IterationContext
from metareward.engine.ranking import Likelihoods
from metareward.engine.weights_history import WeightsHistory
from metareward.model.chat import encode_answer, encode_prompt, render_prompt, turn_end_ids
from metareward.storage.records import LikelihoodRecord, PhaseResult, ResponseRecord
from metareward.storage.run_layout import iteration_dir

STAGES = ("likelihoods", "previous_likelihoods", "earlier_likelihoods")  # by how many iterations back
ACTOR = "actor"


def likelihood_reader(
    context: IterationContext, responses: Sequence[ResponseRecord], history: WeightsHistory | None
) -> Likelihoods:
    """The iteration's `Likelihoods`: the asked-for `responses` scored by the actor `back` iterations ago, that
    version lent from `history` for the pass; None for a version the run did not keep."""
    by_key = {(r.prompt_id, r.index): r for r in responses}
    made: dict[int, Mapping[ResponseKey, Likelihood] | None] = {}  # each version is scored once per iteration

    def read(keys: Sequence[ResponseKey], back: int) -> Mapping[ResponseKey, Likelihood] | None:
        if not 0 <= back < len(STAGES):
            raise ValueError(f"likelihoods are kept for up to {len(STAGES) - 1} iterations back, not {back}")
        if back not in made:
            made[back] = _read(keys, back)
        found = made[back]
        return None if found is None else {key: found[key] for key in keys if key in found}

    def _read(keys: Sequence[ResponseKey], back: int) -> Mapping[ResponseKey, Likelihood] | None:
        lent: Callable[[], AbstractContextManager[object]] = nullcontext
        if back > 0:
            folder = iteration_dir(context.run_dir, context.iteration - back)
            if context.iteration - back < 0 or history is None or not history.saved(folder, ACTOR):
                return None
            lent = lambda: history.lent(folder, ACTOR)
        wanted = [by_key[key] for key in keys]
        with context.clock("likelihoods"):
            scored = context.stage(
                STAGES[back], LikelihoodRecord, lambda share: _score(context, share, lent, STAGES[back]), wanted
            )
        return {(r.prompt_id, r.index): Likelihood(r.logp, r.tokens) for r in scored.records}

    return read


def _score(
    context: IterationContext,
    responses: Sequence[ResponseRecord],
    lent: Callable[[], AbstractContextManager[object]],
    label: str,
) -> PhaseResult:
    """This process's share of the answers scored by the actor with the weights `lent` gives it."""
    tokenizer, turn_end = context.policy.tokenizer, turn_end_ids(context.policy.tokenizer)
    rows = []
    for r in responses:
        prompt = context.by_id[r.prompt_id]
        rows.append(
            (
                encode_prompt(tokenizer, render_prompt(tokenizer, prompt.instruction, prompt.system)),
                encode_answer(tokenizer, r.reasoning + r.text, r.finished, turn_end),
            )
        )
    with lent():
        found = context.policy.completion_logprobs(
            ACTOR, rows, context.settings.actor.batch_size, label.replace("_", " ")
        )
    records = [
        LikelihoodRecord(r.prompt_id, r.index, logp, len(row[1])) for r, logp, row in zip(responses, found, rows)
    ]
    return PhaseResult(records, {})
