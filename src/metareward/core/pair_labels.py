"""Soft preference labels for actor pairs: how sure the loop is that the chosen answer is the better one.

A label q in [0, 1] trains the pair on q * L(y_w, y_l) + (1 - q) * L(y_l, y_w) (see `core.losses`); None is a hard
pair (q = 1). Each labelling is one class, selected by `pairs/label` (conf/pairs/label/):
- `HardLabels` (the default, the papers): every pair is hard.
- `JudgeProbabilityLabels`: q = P(chosen beats rejected) under the judge's own score distributions.

A labelling is called with the iteration's actor pairs and the `LabelEvidence` the engine gathered, and returns one
label per pair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from metareward.records import PairRecord


@dataclass(frozen=True)
class ScoreDistribution:
    """A discrete distribution of scores: `weights[i]` is the probability of `values[i]` (the weights sum to 1)."""

    values: tuple[float, ...]
    weights: tuple[float, ...]

    @classmethod
    def point(cls, score: float) -> ScoreDistribution:
        """A written score: all its mass on one value."""
        return cls((float(score),), (1.0,))

    @classmethod
    def over_scale(cls, values: Sequence[float], probabilities: Sequence[float]) -> ScoreDistribution:
        """The judge's probabilities of each score of its scale, renormalised."""
        weights = np.asarray(probabilities, dtype=np.float64)
        if len(weights) != len(values) or not np.all(weights >= 0) or weights.sum() <= 0:
            raise ValueError(f"{len(weights)} probabilities for {len(values)} scores: need one >= 0 per score")
        return cls(tuple(float(v) for v in values), tuple(float(w) for w in weights / weights.sum()))

    @classmethod
    def mixture(cls, parts: Sequence[ScoreDistribution]) -> ScoreDistribution:
        """An equal-weight mixture: one of the parts drawn at random, then a score from it."""
        if not parts:
            raise ValueError("a mixture needs at least one distribution")
        values = tuple(v for part in parts for v in part.values)
        weights = tuple(w / len(parts) for part in parts for w in part.weights)
        return cls(values, weights)

    @property
    def mean(self) -> float:
        return float(np.dot(self.values, self.weights))


def win_probability(chosen: ScoreDistribution, rejected: ScoreDistribution) -> float:
    """P(S_c > S_r) + 0.5 * P(S_c = S_r) for independent draws S_c ~ chosen, S_r ~ rejected.

    Sum over every pair of atoms (a, b): P(a) * P(b) * [1 if a > b, 0.5 if a = b, 0 if a < b].
    """
    difference = np.subtract.outer(np.asarray(chosen.values), np.asarray(rejected.values))
    outcome = np.where(difference > 0, 1.0, np.where(difference == 0, 0.5, 0.0))
    return float(np.asarray(chosen.weights) @ outcome @ np.asarray(rejected.weights))


ResponseKey = tuple[str, int]  # (prompt id, response index)


@dataclass(frozen=True)
class LabelEvidence:
    """What a labelling may read about the iteration's responses: each judged response's score distribution, the
    equal mixture of its valid judgments (a written score is a point mass, a probability read keeps the judge's
    probabilities of each score)."""

    distributions: Mapping[ResponseKey, ScoreDistribution]


class PairLabels:
    """Base class of a labelling: the iteration's actor pairs and the evidence in, one label (or None) per pair out.
    A new labelling is one subclass plus one YAML file in conf/pairs/label/ naming it with `_target_`."""

    def __call__(self, pairs: Sequence[PairRecord], evidence: LabelEvidence) -> list[float | None]:
        raise NotImplementedError


class HardLabels(PairLabels):
    """Every pair is hard (label None): plain DPO, as in the papers. `dpo.label_smoothing` still applies."""

    def __call__(self, pairs: Sequence[PairRecord], evidence: LabelEvidence) -> list[float | None]:
        return [None] * len(pairs)


class JudgeProbabilityLabels(PairLabels):
    """q = P(chosen beats rejected), from the judge's own score distributions (`win_probability` of the two
    responses' mixtures). A judge sure of its scores gives q near 1 (a hard pair); one that spreads its probability
    over the scale gives q near 0.5, and the pair moves the policy little. This is conservative DPO whose flip
    probability comes from the judge, per pair, rather than one `dpo.label_smoothing` for all. A pair with a side
    that has no distribution (no valid judgment) stays hard.
    """

    def __call__(self, pairs: Sequence[PairRecord], evidence: LabelEvidence) -> list[float | None]:
        labels: list[float | None] = []
        for pair in pairs:
            chosen = evidence.distributions.get((pair.prompt_id, pair.chosen_index))  # type: ignore[arg-type]
            rejected = evidence.distributions.get((pair.prompt_id, pair.rejected_index))  # type: ignore[arg-type]
            labels.append(None if chosen is None or rejected is None else win_probability(chosen, rejected))
        return labels
