"""Build actor preference pairs (chosen, rejected response) from judged responses.

Two strategies, chosen by name from :data:`ACTOR_PAIR_STRATEGIES`:

* ``"length_controlled"``: Wu et al. 2024 (arXiv 2407.19594), Sec. 2.3 "length-control mechanism";
* ``"best_vs_worst"``: Yuan et al. 2024 (arXiv 2401.10020), Sec. 2.3, the Self-Rewarding baseline.

`select_anchored_pairs` is the anchored variant (Temporal Self-Rewarding, arXiv 2508.06026): the chosen side comes
from the current model's responses and the rejected side from a fixed anchor's (the seed model M0's), each picked
by the same strategy.

A per-prompt selector returns ``(chosen, rejected)`` or a drop-reason string (see :mod:`.drops`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from metareward.core.drops import ALL_SCORES_EQUAL, ANCHOR_NOT_BELOW, OVERLAPPING_TIERS, TOO_FEW_SCORED, Selection
from metareward.schema.rules import Number

# Absolute slack on score comparisons: mean scores are floats, and a response sitting exactly on a tier
# boundary must not fall out of the tier through rounding.
SCORE_TOL = 1e-9
# The length-control rho, stated once (the config's pairs.rho and every pairs.rho_schedule entry are checked by it):
# beyond 0.5 the top and bottom tiers overlap (see `select_length_controlled`).
RHO = Number(
    float,
    0,
    0.5,
    reason="above 0.5 the top and bottom score tiers overlap, so the chosen answer could score below the rejected "
    "one (the papers use 0 to 0.4)",
)


@dataclass(frozen=True)
class ScoredResponse:
    """One actor response to a prompt; ``score`` is the mean valid judge score, ``None`` if none was valid."""

    index: int
    text: str
    score: float | None


@dataclass(frozen=True)
class ActorChoice:
    """An actor preference pair for one prompt (flat fields, ready for one JSONL line)."""

    prompt_id: str
    chosen_index: int
    chosen_text: str
    chosen_score: float
    rejected_index: int
    rejected_text: str
    rejected_score: float


ResponsePair = tuple[ScoredResponse, ScoredResponse]


def _scored(responses: Sequence[ScoredResponse]) -> list[ScoredResponse]:
    return [r for r in responses if r.score is not None]


def _score(response: ScoredResponse) -> float:
    # Only called on responses that passed `_scored`.
    assert response.score is not None
    return response.score


def _shortest(responses: Sequence[ScoredResponse]) -> ScoredResponse:
    return min(responses, key=lambda r: (len(r.text), r.index))


def _longest(responses: Sequence[ScoredResponse]) -> ScoredResponse:
    return min(responses, key=lambda r: (-len(r.text), r.index))


def select_length_controlled(responses: Sequence[ScoredResponse], rho: float) -> ResponsePair | str:
    """Pick (chosen, rejected) with the Meta-Rewarding length control (Wu et al. 2024, Sec. 2.3; METHOD step 4).

    With S_max, S_min the extreme valid scores and rho in [0, 0.5]:

    * top tier    = scores in [(1 - rho) * S_max + rho * S_min, S_max]  -> chosen   = shortest text;
    * bottom tier = scores in [S_min, (1 - rho) * S_min + rho * S_max]  -> rejected = longest text.

    Length is in characters; length ties go to the lowest ``index``. rho = 0 is best vs worst. The top tier's
    floor minus the bottom tier's ceiling is (1 - 2 rho)(S_max - S_min), so above rho = 0.5 the tiers overlap
    and the chosen answer could score below the rejected one: such a rho raises ``ValueError`` (the papers use
    0 to 0.4). Responses with ``score=None`` are ignored. Drops: fewer than two scored -> ``"too_few_scored"``;
    S_max == S_min -> ``"all_scores_equal"``; chosen not scored above rejected -> ``"overlapping_tiers"``, which
    happens only where the tiers meet, at rho = 0.5 (or within rounding of it): both picks, or one response
    picked twice, at the midpoint score.
    """
    if not RHO.holds(rho):
        raise ValueError(
            f"rho must lie {RHO.describe()} (above it the score tiers overlap), got {rho}; set pairs.rho accordingly."
        )
    scored = _scored(responses)
    if len(scored) < 2:
        return TOO_FEW_SCORED
    s_max = max(_score(r) for r in scored)
    s_min = min(_score(r) for r in scored)
    if s_max - s_min <= SCORE_TOL:
        return ALL_SCORES_EQUAL
    top_floor = (1.0 - rho) * s_max + rho * s_min
    bottom_ceiling = (1.0 - rho) * s_min + rho * s_max
    chosen = _shortest([r for r in scored if _score(r) >= top_floor - SCORE_TOL])
    rejected = _longest([r for r in scored if _score(r) <= bottom_ceiling + SCORE_TOL])
    # A pair must say "chosen is better"; this also covers one response picked for both sides.
    if _score(chosen) - _score(rejected) <= SCORE_TOL:
        return OVERLAPPING_TIERS
    return chosen, rejected


def select_best_vs_worst(responses: Sequence[ScoredResponse]) -> ResponsePair | str:
    """Pick the highest-scored vs the lowest-scored response (Yuan et al. 2024, Sec. 2.3).

    Among equal top (or equal bottom) scores the lowest ``index`` wins, so the choice is deterministic
    and independent of length. Responses with ``score=None`` are ignored. Drops: fewer than two scored
    -> ``"too_few_scored"``; S_max == S_min -> ``"all_scores_equal"``.
    """
    scored = _scored(responses)
    if len(scored) < 2:
        return TOO_FEW_SCORED
    chosen = min(scored, key=lambda r: (-_score(r), r.index))
    rejected = min(scored, key=lambda r: (_score(r), r.index))
    if _score(chosen) - _score(rejected) <= SCORE_TOL:
        return ALL_SCORES_EQUAL
    return chosen, rejected


def _best_vs_worst_any_rho(responses: Sequence[ScoredResponse], rho: float) -> ResponsePair | str:
    # rho has no meaning for this strategy; accepted so every strategy shares one signature.
    return select_best_vs_worst(responses)


PairSelector = Callable[[Sequence[ScoredResponse], float], ResponsePair | str]

ACTOR_PAIR_STRATEGIES: Mapping[str, PairSelector] = {
    "length_controlled": select_length_controlled,
    "best_vs_worst": _best_vs_worst_any_rho,
}


def _to_choice(prompt_id: str, outcome: ResponsePair | str) -> ActorChoice | str:
    if isinstance(outcome, str):
        return outcome
    chosen, rejected = outcome
    return ActorChoice(
        prompt_id=prompt_id,
        chosen_index=chosen.index,
        chosen_text=chosen.text,
        chosen_score=_score(chosen),
        rejected_index=rejected.index,
        rejected_text=rejected.text,
        rejected_score=_score(rejected),
    )


def select_actor_pairs(
    per_prompt: Mapping[str, Sequence[ScoredResponse]], rho: float, strategy: str
) -> Selection[ActorChoice]:
    """Apply one strategy to every prompt; picks keep the mapping's order, drops are counted by reason."""
    if strategy not in ACTOR_PAIR_STRATEGIES:
        known = ", ".join(sorted(ACTOR_PAIR_STRATEGIES))
        raise ValueError(f"Unknown actor pair strategy {strategy!r}; use one of: {known}.")
    select = ACTOR_PAIR_STRATEGIES[strategy]
    return Selection.from_outcomes(
        _to_choice(prompt_id, select(responses, rho)) for prompt_id, responses in per_prompt.items()
    )


def chosen_pick(responses: Sequence[ScoredResponse], rho: float, strategy: str) -> ScoredResponse | None:
    """The response `strategy` would take as the chosen side among `responses` (None: none is scored).

    length_controlled: the shortest of the top tier, scores in [(1 - rho) * S_max + rho * S_min, S_max];
    best_vs_worst: the highest score, lowest index on ties. Equal scores make every response top tier.
    """
    scored = _scored(responses)
    if not scored:
        return None
    s_max, s_min = max(map(_score, scored)), min(map(_score, scored))
    if strategy == "best_vs_worst":
        return min(scored, key=lambda r: (-_score(r), r.index))
    return _shortest([r for r in scored if _score(r) >= (1.0 - rho) * s_max + rho * s_min - SCORE_TOL])


def rejected_pick(responses: Sequence[ScoredResponse], rho: float, strategy: str) -> ScoredResponse | None:
    """The mirror of `chosen_pick`: the longest of the bottom tier, scores in [S_min, (1 - rho) * S_min + rho *
    S_max] (length_controlled), or the lowest score, lowest index on ties (best_vs_worst)."""
    scored = _scored(responses)
    if not scored:
        return None
    s_max, s_min = max(map(_score, scored)), min(map(_score, scored))
    if strategy == "best_vs_worst":
        return min(scored, key=lambda r: (_score(r), r.index))
    return _longest([r for r in scored if _score(r) <= (1.0 - rho) * s_min + rho * s_max + SCORE_TOL])


def select_anchored(
    own: Sequence[ScoredResponse], anchors: Sequence[ScoredResponse], rho: float, strategy: str
) -> ResponsePair | str:
    """Chosen: the strategy's chosen pick among the current model's responses `own`; rejected: its rejected pick
    among the `anchors` (the seed model's answers to the same prompt, scored by the same judge). Each side's tiers
    are those of its own set, so length control still favours a short chosen and a long rejected answer.

    Drops: no scored response on one side -> ``"too_few_scored"``; the chosen not scored above the rejected ->
    ``"anchor_not_below"`` (the current model did not beat the anchor's pick, so the pair would say nothing true).
    """
    if not RHO.holds(rho):
        raise ValueError(f"rho must lie {RHO.describe()}, got {rho}; set pairs.rho accordingly.")
    chosen, rejected = chosen_pick(own, rho, strategy), rejected_pick(anchors, rho, strategy)
    if chosen is None or rejected is None:
        return TOO_FEW_SCORED
    if _score(chosen) - _score(rejected) <= SCORE_TOL:
        return ANCHOR_NOT_BELOW
    return chosen, rejected


def select_anchored_pairs(
    own: Mapping[str, Sequence[ScoredResponse]],
    anchors: Mapping[str, Sequence[ScoredResponse]],
    rho: float,
    strategy: str,
) -> Selection[ActorChoice]:
    """`select_anchored` for every prompt of `own` (a prompt without anchors has nothing to reject)."""
    if strategy not in ACTOR_PAIR_STRATEGIES:
        known = ", ".join(sorted(ACTOR_PAIR_STRATEGIES))
        raise ValueError(f"Unknown actor pair strategy {strategy!r}; use one of: {known}.")
    return Selection.from_outcomes(
        _to_choice(prompt_id, select_anchored(responses, anchors.get(prompt_id, ()), rho, strategy))
        for prompt_id, responses in own.items()
    )
