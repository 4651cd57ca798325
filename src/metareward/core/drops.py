"""Result convention for every selector: what was picked, plus how many candidates were dropped and why.

A selector that works on one candidate returns either its pick or a drop-reason string; the batch
selectors gather those outcomes into a :class:`Selection` so the loop can log ``pairs/dropped/<reason>``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

# Drop reasons shared by the selectors (stable strings: they become metric names).
TOO_FEW_SCORED = "too_few_scored"
ALL_SCORES_EQUAL = "all_scores_equal"
# Length control at rho = 0.5: the tiers meet at the midpoint score and the picks there do not differ.
OVERLAPPING_TIERS = "overlapping_tiers"
# Anchored rejections: the current model's chosen answer did not score above the anchor's rejected one.
ANCHOR_NOT_BELOW = "anchor_not_below"
NO_VALID_SCORES = "no_valid_scores"
TOO_FEW_JUDGMENTS = "too_few_judgments"
NO_STRICT_ORDER = "no_strict_order"
JUDGMENT_TOO_LONG = "judgment_too_long"
# pairs.max_chosen_chars_schedule: an actor pair whose chosen answer is longer than the iteration's cap.
CHOSEN_TOO_LONG = "chosen_too_long"


def merge_drops(*counters: Mapping[str, int]) -> dict[str, int]:
    """Add drop counters reason by reason; the result is sorted by reason for stable logs."""
    total: Counter[str] = Counter()
    for counter in counters:
        total.update(counter)
    return dict(sorted(total.items()))


@dataclass(frozen=True)
class Selection(Generic[T]):
    """Picks of a selector (in input order) and the count of dropped candidates per reason."""

    items: tuple[T, ...]
    drops: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Own copies, so a caller mutating its inputs cannot change a finished selection.
        object.__setattr__(self, "items", tuple(self.items))
        object.__setattr__(self, "drops", merge_drops(self.drops))

    @property
    def num_dropped(self) -> int:
        """Total number of dropped candidates over all reasons."""
        return sum(self.drops.values())

    @classmethod
    def from_outcomes(cls, outcomes: Iterable[T | str]) -> Selection[T]:
        """Split per-candidate outcomes into picks and drop counts; a ``str`` outcome is a drop reason."""
        items: list[T] = []
        reasons: Counter[str] = Counter()
        for outcome in outcomes:
            if isinstance(outcome, str):
                reasons[outcome] += 1
            else:
                items.append(outcome)
        return cls(items=tuple(items), drops=reasons)

    def merged_with(self, other: Selection[T]) -> Selection[T]:
        """Concatenate picks (self first) and add drop counters."""
        return Selection(items=self.items + other.items, drops=merge_drops(self.drops, other.drops))
