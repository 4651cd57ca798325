"""How the actor's K responses to a prompt are ranked before the actor pair is chosen (`judge/ranking`).

Each ranking is one class, selected by conf/judge/ranking/<name>.yaml:
- `PointwiseRanking` (the default, the papers): each response keeps its score S_k, the mean of its valid judgments.
- `PairwiseRanking`: the judge also compares the responses two at a time, every ordered pair (i, j) once, and each
  response's score becomes its Bradley-Terry strength or Copeland count over those verdicts (`core.pairwise`).

Either way the scores go to `engine.pairs.actor_pairs` unchanged in kind, so length control (the rho tiers, which
are relative to S_max - S_min) and best-vs-worst pick from them as they do from mean scores. Pointwise judgments are
made in both modes: the meta-judge trains the judge on them and stats.json reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from metareward.core.actor_pairs import ScoredResponse
from metareward.core.comparison_prompt import COMPARISON_TEMPLATE, comparison_template_problems
from metareward.core.judge_pairs import ordered_pairs, positional_weights
from metareward.core.pairwise import PAIRWISE_RANKINGS, rank_scores
from metareward.storage.records import ComparisonRecord, PhaseResult

Candidates = Mapping[str, Sequence[ScoredResponse]]  # prompt id -> the responses that may become a side of a pair


@dataclass(frozen=True)
class ComparisonTask:
    """One comparison to make: response `first` shown as "Response A", `second` as "Response B"."""

    prompt_id: str
    first: ScoredResponse
    second: ScoredResponse


# Makes the comparisons (the engine's judge, with its seeds, limits and stage file) from the tasks and the template.
Comparer = Callable[[Sequence[ComparisonTask], str], PhaseResult]


@dataclass(frozen=True)
class Ranked:
    """The candidates with the scores the actor pair is chosen by, and the ranking's own statistics."""

    candidates: dict[str, list[ScoredResponse]]
    stats: dict[str, float] = field(default_factory=dict)


class ActorRanking:
    """Base class of a ranking: the iteration's candidates in, the same candidates with their ranking scores out.
    `compare` makes pairwise comparisons on request; a ranking that needs none never calls it. A new ranking is one
    subclass plus one YAML file in conf/judge/ranking/ naming it with `_target_`."""

    def rank(self, candidates: Candidates, compare: Comparer) -> Ranked:
        raise NotImplementedError


class PointwiseRanking(ActorRanking):
    """Each response ranked by its mean pointwise judge score (Yuan et al. 2024; Wu et al. 2024): today's loop."""

    def rank(self, candidates: Candidates, compare: Comparer) -> Ranked:
        return Ranked({prompt_id: list(responses) for prompt_id, responses in candidates.items()})


class RankingError(ValueError):
    """A pairwise ranking that cannot be used; `problems` holds one sentence per problem, each naming its field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class PairwiseRanking(ActorRanking):
    """Responses ranked by direct comparisons: every ordered pair of a prompt's judged, pair-eligible responses,
    weighted against position bias with (w1, w2) pooled over the iteration, as the meta-judge's verdicts are (Wu et
    al. 2024, Sec. 2.2), then scored by `method` (`core.pairwise.rank_scores`): bradley_terry (strengths, with the
    ridge `l2`) or copeland (opponents beaten minus opponents lost to). K responses cost K (K - 1) comparisons.

    `template` is the comparison prompt (`core.comparison_prompt`); its final line is the judge prompt's winner line.
    """

    def __init__(self, method: str, l2: float, template: str = COMPARISON_TEMPLATE) -> None:
        found = []
        if method not in PAIRWISE_RANKINGS:
            found.append(f"method={method!r} is not one of {sorted(PAIRWISE_RANKINGS)}")
        if not isinstance(l2, (int, float)) or l2 < 0:
            found.append(f"l2={l2!r} must be a number >= 0")
        found += comparison_template_problems(template)
        if found:
            raise RankingError(found)
        self.method, self.l2, self.template = method, float(l2), template

    def rank(self, candidates: Candidates, compare: Comparer) -> Ranked:
        eligible = {prompt_id: [r for r in rs if r.score is not None] for prompt_id, rs in candidates.items()}
        tasks = [
            ComparisonTask(prompt_id, responses[i], responses[j])
            for prompt_id, responses in eligible.items()
            if len(responses) >= 2
            for i, j in ordered_pairs(len(responses))
        ]
        compared = compare(tasks, self.template)
        scores, (w1, w2) = pairwise_scores(eligible, compared.records, self.method, self.l2)
        ranked = {prompt_id: rescored(prompt_id, responses, scores) for prompt_id, responses in candidates.items()}
        stats = {
            "compare/comparisons": float(len(compared.records)),
            "compare/parse_failures": float(compared.parse_failures),
            "compare/w1": w1,
            "compare/w2": w2,
        }
        stats.update({f"compare/dropped/{reason}": float(n) for reason, n in compared.drops.items()})
        return Ranked(ranked, stats)


def rescored(
    prompt_id: str, responses: Sequence[ScoredResponse], scores: Mapping[tuple[str, int], float]
) -> list[ScoredResponse]:
    """A prompt's responses with their ranking scores. A prompt that was not compared (fewer than two eligible
    responses, or a comparison prompt too long to generate from) has no ranking: its responses are left unscored,
    so it forms no actor pair."""
    return [replace(r, score=scores.get((prompt_id, r.index))) for r in responses]


def pairwise_scores(
    eligible: Mapping[str, Sequence[ScoredResponse]],
    comparisons: Sequence[ComparisonRecord],
    method: str,
    l2: float,
) -> tuple[dict[tuple[str, int], float], tuple[float, float]]:
    """(prompt id, response index) -> ranking score for every compared prompt, and the weights (w1, w2) applied.

    The weights come from all the iteration's verdicts together (`positional_weights`); each prompt's verdicts
    r^{ij}, keyed by the responses' positions among its eligible ones, go to `rank_scores`.
    """
    w1, w2 = positional_weights(c.verdict for c in comparisons)
    by_prompt: dict[str, dict[tuple[int, int], int]] = {}
    for c in comparisons:
        by_prompt.setdefault(c.prompt_id, {})[(c.first, c.second)] = c.verdict
    scores: dict[tuple[str, int], float] = {}
    for prompt_id, verdicts in by_prompt.items():
        responses = eligible[prompt_id]
        slot = {r.index: position for position, r in enumerate(responses)}
        found = rank_scores(
            method, len(responses), {(slot[a], slot[b]): v for (a, b), v in verdicts.items()}, w1, w2, l2=l2
        )
        scores.update({(prompt_id, r.index): float(score) for r, score in zip(responses, found)})
    return scores, (w1, w2)
