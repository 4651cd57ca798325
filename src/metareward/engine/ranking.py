"""How the actor's K responses to a prompt are ranked before the actor pair is chosen (`judge/ranking`).

Each ranking is one class, selected by conf/judge/ranking/<name>.yaml:
- `PointwiseRanking` (the default, the papers): each response keeps its score S_k, the mean of its valid judgments.
- `PairwiseRanking`: the judge also compares the responses two at a time, every ordered pair (i, j) once, and each
  response's score becomes its Bradley-Terry strength or Copeland count over those verdicts (`core.pairwise`).
- `ImplicitRewardRanking` (CREAM's own): no judge; each response's score is the actor's DPO implicit reward
  log pi_t - log pi_t-1 (`core.implicit_reward`), read from the actor's log-likelihoods now and one iteration ago.

Whichever ranks, the scores go to `engine.pairs.actor_pairs` unchanged in kind, so length control (the rho tiers, which
are relative to S_max - S_min) and best-vs-worst pick from them as they do from mean scores. Pointwise judgments are
made whatever ranks: the meta-judge trains the judge on them and stats.json reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from metareward.core.actor_pairs import ScoredResponse
from metareward.core.comparison_prompt import COMPARISON_TEMPLATE, comparison_template_problems
from metareward.core.implicit_reward import Likelihood, implicit_rewards
from metareward.core.judge_pairs import ordered_pairs, positional_weights
from metareward.core.pair_labels import ResponseKey
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
# The log-likelihood of each response under the actor as it was `back` iterations ago (0: now; its own stage file),
# or None when that version was not kept (before the run's first model).
Likelihoods = Callable[[Sequence[ResponseKey], int], Mapping[ResponseKey, Likelihood] | None]


def no_likelihoods(keys: Sequence[ResponseKey], back: int) -> None:
    """For a ranking that reads no likelihoods: none are kept."""
    raise ValueError("this ranking was given no likelihoods to read")


@dataclass(frozen=True)
class Ranked:
    """The candidates with the scores the actor pair is chosen by, and the ranking's own statistics."""

    candidates: dict[str, list[ScoredResponse]]
    stats: dict[str, float] = field(default_factory=dict)


class ActorRanking:
    """Base class of a ranking: the iteration's candidates in, the same candidates with their ranking scores out.
    `compare` makes pairwise comparisons and `likelihoods` reads the actor's log-likelihoods, on request; a ranking
    that needs neither never calls them. A new ranking is one subclass plus one YAML file in conf/judge/ranking/
    naming it with `_target_`.

    `reads_judge` is False for a ranking made without the LLM judge: CREAM's consistency labels then compare its
    rankings of two iterations (`previous`) instead of two judges'. `keeps_actor_history` asks the engine to keep
    the actor's weights of every iteration (`engine.weights_history`) for `likelihoods` to read."""

    reads_judge = True
    keeps_actor_history = False

    def rank(self, candidates: Candidates, compare: Comparer, likelihoods: Likelihoods = no_likelihoods) -> Ranked:
        raise NotImplementedError

    def previous(self, candidates: Candidates, likelihoods: Likelihoods) -> dict[ResponseKey, float] | None:
        """The scores the same ranking gave the candidates one iteration ago (None: it had none), for a ranking
        that does not read the judge."""
        return None


class PointwiseRanking(ActorRanking):
    """Each response ranked by its mean pointwise judge score (Yuan et al. 2024; Wu et al. 2024): today's loop."""

    def rank(self, candidates: Candidates, compare: Comparer, likelihoods: Likelihoods = no_likelihoods) -> Ranked:
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

    def rank(self, candidates: Candidates, compare: Comparer, likelihoods: Likelihoods = no_likelihoods) -> Ranked:
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


class ImplicitRewardRanking(ActorRanking):
    """CREAM's ranking (Wang et al. 2024, arXiv 2410.12735; the authors' rewarding.py): each response scored by the
    DPO implicit reward of the actor that wrote it, r_t(y) = log pi_t(y | x) - log pi_t-1(y | x), pi_t-1 being the
    model pi_t was trained from (the previous iteration's actor; in iteration 1 the model before the warm start).
    Where there is no such model (iteration 1 without a warm start) the score is the length-normalised
    log-likelihood log pi_t(y | x) / |y| (`core.implicit_reward`). The judge is not asked; every finished response
    is ranked, judged or not. Costs two scoring passes over the iteration's answers (three with CREAM's
    consistency labels, whose previous ranking reads pi_t-2)."""

    reads_judge = False
    keeps_actor_history = True

    def rank(self, candidates: Candidates, compare: Comparer, likelihoods: Likelihoods = no_likelihoods) -> Ranked:
        keys = _keys(candidates)
        now, before = likelihoods(keys, 0), likelihoods(keys, 1)
        scores = implicit_rewards(now or {}, before)
        ranked = {prompt_id: rescored(prompt_id, responses, scores) for prompt_id, responses in candidates.items()}
        return Ranked(ranked, {"ranking/against_previous_model": float(before is not None)})

    def previous(self, candidates: Candidates, likelihoods: Likelihoods) -> dict[ResponseKey, float] | None:
        """r_t-1 of the same responses: log pi_t-1 - log pi_t-2 (or pi_t-1's normalised likelihood where pi_t-1
        was the first model); None when pi_t-1 was not kept."""
        keys = _keys(candidates)
        before = likelihoods(keys, 1)
        return None if before is None else implicit_rewards(before, likelihoods(keys, 2))


def _keys(candidates: Candidates) -> list[ResponseKey]:
    return [(prompt_id, r.index) for prompt_id, responses in candidates.items() for r in responses]


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
