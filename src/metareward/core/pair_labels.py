"""Soft preference labels for actor pairs: how sure the loop is that the chosen answer is the better one.

A label q in [0, 1] trains the pair on q * L(y_w, y_l) + (1 - q) * L(y_l, y_w) (see `core.losses`); None is a hard
pair (q = 1). Each labelling is one class, selected by `pairs/label` (conf/pairs/label/):
- `HardLabels` (the default, the papers): every pair is hard.
- `JudgeProbabilityLabels`: q = P(chosen's mean score beats rejected's) under the judge's own score distributions.
- `ConsistencyLabels` (CREAM): q = how well the current judge's ranking of a prompt's responses agrees with the
  previous iteration's judge's ranking of the same responses, (Kendall tau-b + 1) / 2, per prompt or averaged.

A labelling is called with the iteration's actor pairs and the `LabelEvidence` the engine gathered, and returns one
label per pair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from metareward.core.consistency import consistency, dataset_consistency
from metareward.storage.records import PairRecord


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
    def mean_of(cls, parts: Sequence[ScoreDistribution]) -> ScoreDistribution:
        """The distribution of the mean of one independent draw from each part: what a response's mean over its N
        judgments is, when each judgment has its own distribution (the pair was chosen on that mean)."""
        if not parts:
            raise ValueError("a mean needs at least one distribution")
        sums = {0.0: 1.0}
        for part in parts:
            grown: dict[float, float] = {}
            for total, weight in sums.items():
                for value, probability in zip(part.values, part.weights):
                    if probability == 0.0:
                        continue  # an impossible score adds no atom
                    key = round(total + value, 9)  # equal sums reached in different orders meet on one atom
                    grown[key] = grown.get(key, 0.0) + weight * probability
            sums = grown
        return cls(tuple(total / len(parts) for total in sums), tuple(sums.values()))

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
    """What a labelling may read about the iteration's responses: the distribution of each judged response's mean
    score over its valid judgments (a written score is a point mass, a probability read keeps the judge's
    probabilities of each score; the judgments are independent draws)."""

    distributions: Mapping[ResponseKey, ScoreDistribution]
    # Each judged response's mean valid score under the current judge and, when a labelling asked for it
    # (`reads_previous_judge`) and there was one, under the previous iteration's judge (None: no previous judge);
    # with a ranking made without the judge, that ranking's scores now and one iteration earlier.
    scores: Mapping[ResponseKey, float] = field(default_factory=dict)
    previous_scores: Mapping[ResponseKey, float] | None = None


class PairLabels:
    """Base class of a labelling: the iteration's actor pairs and the evidence in, one label (or None) per pair out.
    A new labelling is one subclass plus one YAML file in conf/pairs/label/ naming it with `_target_`; one that
    sets `reads_previous_judge` makes the engine judge every response a second time with the previous iteration's
    judge (`LabelEvidence.previous_scores`; the engine's `PreviousJudge` stage, chosen by this flag alone)."""

    reads_previous_judge: bool = False
    reads_judge_probabilities: bool = False  # labels from the judge's scores of the two sides

    def __call__(self, pairs: Sequence[PairRecord], evidence: LabelEvidence) -> list[float | None]:
        raise NotImplementedError


class HardLabels(PairLabels):
    """Every pair is hard (label None): plain DPO, as in the papers. `dpo.label_smoothing` still applies."""

    def __call__(self, pairs: Sequence[PairRecord], evidence: LabelEvidence) -> list[float | None]:
        return [None] * len(pairs)


class JudgeProbabilityLabels(PairLabels):
    """q = P(chosen beats rejected), from the judge's own score distributions: `win_probability` of the two
    responses' mean scores over their N judgments (`ScoreDistribution.mean_of`), the statistic the pair was chosen
    on; a single judgment's distribution would be wider and give a q nearer 0.5. A judge sure of its scores gives q near 1 (a hard pair); one that spreads its probability
    over the scale gives q near 0.5, and the pair moves the policy little. This is conservative DPO whose flip
    probability comes from the judge, per pair, rather than one `dpo.label_smoothing` for all. A pair with a side
    that has no distribution (no valid judgment) stays hard.
    """

    reads_judge_probabilities = True

    def __call__(self, pairs: Sequence[PairRecord], evidence: LabelEvidence) -> list[float | None]:
        labels: list[float | None] = []
        for pair in pairs:
            chosen = evidence.distributions.get((pair.prompt_id, pair.chosen_index))  # type: ignore[arg-type]
            rejected = evidence.distributions.get((pair.prompt_id, pair.rejected_index))  # type: ignore[arg-type]
            labels.append(None if chosen is None or rejected is None else win_probability(chosen, rejected))
        return labels


CONSISTENCY_GRANULARITIES = ("dataset", "prompt")


class ConsistencyLabels(PairLabels):
    """CREAM's consistency-regularised labels (Wang et al. 2024, arXiv 2410.12735): the current judge and the
    previous iteration's judge each rank a prompt's responses by their mean score (or, with a ranking made without
    the judge, the ranking and the same ranking one iteration earlier: `LabelEvidence.scores` and
    `previous_scores` hold whichever the engine compares), and the two rankings' agreement
    C = (tau_b + 1) / 2 (`core.consistency`) is the label of that prompt's pair. Where the two judges agree the pair
    trains as DPO; where they disagree, the preference is likely noise and the pair is softened, or reversed below
    C = 0.5.

    `granularity="dataset"` (CREAM's own choice) gives every pair the mean C over the iteration's prompts (those
    where C is defined: two or more responses scored by both judges, not all tied on one side); `"prompt"` gives
    each pair its own prompt's C, falling back to that mean where the prompt's is undefined. Without a previous
    judge (iteration 1) every pair is hard, and so is every pair when no prompt's C is defined.
    """

    reads_previous_judge = True

    def __init__(self, granularity: str = "dataset") -> None:
        if granularity not in CONSISTENCY_GRANULARITIES:
            raise ValueError(f"granularity={granularity!r} is not one of {list(CONSISTENCY_GRANULARITIES)}")
        self.granularity = granularity

    def __call__(self, pairs: Sequence[PairRecord], evidence: LabelEvidence) -> list[float | None]:
        if evidence.previous_scores is None:
            return [None] * len(pairs)
        per_prompt = prompt_consistencies(evidence.scores, evidence.previous_scores)
        mean = dataset_consistency(per_prompt.values())
        if self.granularity == "dataset":
            return [mean] * len(pairs)
        return [mean if per_prompt.get(pair.prompt_id) is None else per_prompt[pair.prompt_id] for pair in pairs]


def prompt_consistencies(
    scores: Mapping[ResponseKey, float], previous_scores: Mapping[ResponseKey, float]
) -> dict[str, float | None]:
    """Prompt id -> C of the two judges' scores of its responses (those both judges scored), None where undefined."""
    both: dict[str, list[tuple[float, float]]] = {}
    for key in sorted(set(scores) & set(previous_scores)):
        both.setdefault(key[0], []).append((previous_scores[key], scores[key]))
    return {prompt: consistency([p for p, _ in found], [c for _, c in found]) for prompt, found in both.items()}
