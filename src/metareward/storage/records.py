"""The records the loop produces, one small frozen dataclass each, stored as JSON Lines per iteration.

Dependencies point one way: records know nothing of models, Lightning or Hydra.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, TypeVar

PairKind = Literal["actor", "judge"]
ScoreSource = Literal["parsed", "probability", "none"]


@dataclass(frozen=True)
class PromptRecord:
    """One instruction of the prompt pool, and the system prompt the actor is asked it with ("" when none)."""

    id: str
    instruction: str
    category: str = ""
    system: str = ""


@dataclass(frozen=True)
class ResponseRecord:
    """The actor's k-th answer to a prompt. A thinking model's reasoning before it is kept in `reasoning` (never
    judged, measured or shown to a judge; trained with the answer); `num_tokens` counts both."""

    prompt_id: str
    index: int
    text: str
    num_tokens: int
    finished: bool
    reasoning: str = ""


@dataclass(frozen=True)
class JudgmentRecord:
    """The judge's j-th evaluation of one response; `score` is None when no valid score could be read.

    `finished` is False when the judge hit its token limit (a score read by probability may still follow the cut).
    `score_probabilities`: for a score read by probability, the judge's probability of each score of the judge
    prompt's scale (lowest first), whose mean is `score`; None for a written score.
    """

    prompt_id: str
    response_index: int
    index: int
    text: str
    score: float | None
    score_source: ScoreSource
    finished: bool = True
    score_probabilities: list[float] | None = None
    reasoning: str = ""  # a thinking judge's reasoning before `text` (the score is read from `text` only)


@dataclass(frozen=True)
class MetaJudgmentRecord:
    """One meta-judge verdict on judgments `first` and `second` (shown in that order) of one response.

    verdict: +1 the first-shown judgment won, -1 the second-shown won, 0 tie or unreadable.
    """

    prompt_id: str
    response_index: int
    first: int
    second: int
    text: str
    verdict: int
    verdict_source: ScoreSource
    log_odds: float | None = None  # log P(A) - log P(B) where the verdict was read by probability
    reasoning: str = ""  # a thinking meta-judge's reasoning before `text`


@dataclass(frozen=True)
class ComparisonRecord:
    """One pairwise-judge verdict on responses `first` and `second` (response indices, shown in that order as
    "Response A" and "Response B") of one prompt, made when actor responses are ranked pairwise (judge/ranking).

    verdict: +1 the first-shown response won, -1 the second-shown won, 0 tie or unreadable.
    """

    prompt_id: str
    first: int
    second: int
    text: str
    verdict: int
    verdict_source: ScoreSource
    log_odds: float | None = None  # log P(A) - log P(B) where the verdict was read by probability
    reasoning: str = ""  # a thinking judge's reasoning before `text`


@dataclass(frozen=True)
class LikelihoodRecord:
    """log pi(response | prompt) of the actor's `index`-th response, summed over its `tokens` tokens, under one of
    the actor's versions (`judge/ranking=implicit_reward`: now, or as an earlier iteration began)."""

    prompt_id: str
    index: int
    logp: float
    tokens: int


@dataclass(frozen=True)
class PairRecord:
    """A preference pair for DPO. `prompt` is the user message, `system` the system prompt before it (an actor pair
    of a prompt asked with one); the chat template is applied at training time.

    A thinking model's side is trained as it was written, its reasoning (`*_reasoning`) and then its text: DPO
    compares the likelihood of what the policy produced. A side whose text hit its generation limit (`*_finished` False) is trained without an end-of-turn token, so
    DPO never teaches the model to stop where it was cut (see `pairs.unfinished`). The reference log-probs come from
    M_t, the model that made the iteration's data. An actor pair keeps the indices of its two responses. `label` is
    the soft preference label, the probability that the chosen side is the better (`core.pair_labels`); None is a
    hard pair.
    """

    kind: PairKind
    prompt_id: str
    prompt: str
    chosen: str
    rejected: str
    chosen_score: float | None = None
    rejected_score: float | None = None
    ref_chosen_logp: float | None = None
    ref_rejected_logp: float | None = None
    chosen_finished: bool = True
    rejected_finished: bool = True
    chosen_index: int | None = None
    rejected_index: int | None = None
    label: float | None = None
    system: str = ""
    chosen_reasoning: str = ""  # a thinking model's reasoning before each side's text, trained with it
    rejected_reasoning: str = ""


@dataclass(frozen=True)
class PhaseResult:
    """What one stage of an iteration made: its records, what it dropped (reason -> count) and how many texts had no
    final line to parse."""

    records: list
    drops: dict[str, int]
    parse_failures: int = 0


Record = TypeVar("Record")


def to_dict(record: Any) -> dict[str, Any]:
    return asdict(record)


def from_dict(record_type: type[Record], data: dict[str, Any]) -> Record:
    """Build a record from a dict, ignoring unknown keys so older and newer files stay readable."""
    known = {f.name for f in fields(record_type)}  # type: ignore[arg-type]
    return record_type(**{key: value for key, value in data.items() if key in known})
