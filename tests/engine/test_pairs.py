"""Pair building from records: actor pairs per strategy, judge pairs through weights, battles and Elo."""

from __future__ import annotations

from dataclasses import replace

import pytest

from metareward.core.pair_labels import HardLabels, JudgeProbabilityLabels
from metareward.engine.iteration_stats import label_stats, meta_bias_stats
from metareward.engine.pairs import actor_pairs, judge_pairs, label_evidence, labelled, scored_responses
from metareward.engine.phases import MetaTarget, meta_targets
from metareward.storage.records import JudgmentRecord, MetaJudgmentRecord, PromptRecord, ResponseRecord

PROMPT = PromptRecord("p", "Explain tides.")
RESPONSES = [
    ResponseRecord("p", k, text, 10, True) for k, text in enumerate(["short ok", "a much longer answer", "mid"])
]


def judgment(response: int, index: int, score: float | None, text: str = "") -> JudgmentRecord:
    return JudgmentRecord("p", response, index, text or f"j{response}{index}\nScore: {score}", score, "parsed")


def test_scored_responses_average_valid_scores_and_pairs_follow_the_strategy() -> None:
    judgments = [
        judgment(0, 0, 4.0),
        judgment(0, 1, None),
        judgment(1, 0, 1.0),
        judgment(1, 1, 2.0),
        judgment(2, 0, 3.0),
    ]
    per_prompt = scored_responses(RESPONSES, judgments)
    assert [r.score for r in per_prompt["p"]] == [4.0, 1.5, 3.0]
    best = actor_pairs({"p": PROMPT}, per_prompt, rho=0.0, strategy="best_vs_worst").items[0]
    assert (best.chosen, best.rejected, best.chosen_score, best.rejected_score) == (
        "short ok",
        "a much longer answer",
        4.0,
        1.5,
    )
    assert best.kind == "actor" and best.prompt == "Explain tides."


def test_meta_target_is_the_response_with_the_most_varied_valid_scores() -> None:
    judgments = [
        judgment(0, 0, 4.0),
        judgment(0, 1, 4.0),
        judgment(1, 0, 1.0),
        judgment(1, 1, 5.0),
        judgment(1, 2, None),
    ]
    targets, drops = meta_targets({"p": PROMPT}, RESPONSES, judgments)
    assert drops == {}
    assert targets[0].response.index == 1 and [j.index for j in targets[0].judgments] == [0, 1]


def test_a_prompt_without_two_valid_judgments_on_any_response_is_dropped() -> None:
    targets, drops = meta_targets({"p": PROMPT}, RESPONSES, [judgment(0, 0, 3.0), judgment(1, 0, None)])
    assert targets == [] and drops == {"too_few_judgments": 1}


def three_judgment_target() -> MetaTarget:
    judgments = tuple(judgment(1, i, s, f"judgment {i}\nScore: {s}") for i, s in enumerate([4.0, 2.0, 1.0]))
    return MetaTarget(PROMPT, RESPONSES[1], judgments)


def verdict(first: int, second: int, value: int) -> MetaJudgmentRecord:
    return MetaJudgmentRecord("p", 1, first, second, "", value, "parsed")


def test_judge_pair_is_strongest_versus_weakest_judgment() -> None:
    # Judgment 0 beats both others in both orders, 1 beats 2 in both orders: a strict order 0 > 1 > 2.
    wins = {(0, 1): 1, (1, 0): -1, (0, 2): 1, (2, 0): -1, (1, 2): 1, (2, 1): -1}
    verdicts = [verdict(a, b, v) for (a, b), v in wins.items()]
    selection, (w1, w2) = judge_pairs([three_judgment_target()], verdicts, max_judgment_chars=1000, elo_l2=1e-3)
    assert (w1, w2) == (0.5, 0.5)  # three first-slot and three second-slot wins
    pair = selection.items[0]
    assert pair.kind == "judge" and pair.chosen.startswith("judgment 0") and pair.rejected.startswith("judgment 2")
    assert "Explain tides." in pair.prompt and "a much longer answer" in pair.prompt  # the judge prompt, filled
    assert (pair.chosen_score, pair.rejected_score) == (4.0, 1.0)


def test_judge_pair_over_the_length_cap_is_dropped() -> None:
    wins = {(0, 1): 1, (1, 0): -1, (0, 2): 1, (2, 0): -1, (1, 2): 1, (2, 1): -1}
    verdicts = [verdict(a, b, v) for (a, b), v in wins.items()]
    selection, _ = judge_pairs([three_judgment_target()], verdicts, max_judgment_chars=5, elo_l2=1e-3)
    assert selection.items == () and selection.drops == {"judgment_too_long": 1}


def test_a_meta_judge_that_always_picks_the_second_slot_gives_no_order() -> None:
    # Every win comes from the second slot, so w2 = win_1st / total = 0: no battle counts, no strict order.
    verdicts = [verdict(a, b, -1) for a in range(3) for b in range(3) if a != b]
    selection, (w1, w2) = judge_pairs([three_judgment_target()], verdicts, max_judgment_chars=None, elo_l2=1e-3)
    assert (w1, w2) == (1.0, 0.0) and selection.drops == {"no_strict_order": 1}


def test_meta_bias_statistics() -> None:
    target = three_judgment_target()
    verdicts = [verdict(0, 1, 1), verdict(1, 0, 1), verdict(0, 2, -1), verdict(2, 0, 0)]
    stats = meta_bias_stats(verdicts, list(target.judgments))
    # Decisive: (0,1) first wins, (1,0) first wins, (0,2) second wins -> 2 of 3 prefer the first slot.
    assert stats["meta/positional_bias"] == pytest.approx(2 / 3)
    # Higher-scored winner: (0,1) yes (4 > 2), (1,0) no (2 < 4), (0,2) no (1 < 4) -> 1 of 3.
    assert stats["meta/prefers_higher_score"] == pytest.approx(1 / 3)


def test_label_evidence_averages_each_response_s_valid_judgments_and_pairs_get_their_labels() -> None:
    scale = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    read = JudgmentRecord("p", 0, 1, "j01\nScore: 3", 2.5, "probability", score_probabilities=[0, 0, 0.5, 0.5, 0, 0])
    judgments = [judgment(0, 0, 4.0), read, judgment(1, 0, 3.0), judgment(1, 1, None), judgment(2, 0, 1.0)]
    evidence = label_evidence(judgments, scale)
    assert sorted(evidence.distributions) == [("p", 0), ("p", 1), ("p", 2)]
    assert evidence.distributions[("p", 1)].values == (3.0,)  # the unreadable judgment is left out
    per_prompt = scored_responses(RESPONSES, judgments)
    pair = actor_pairs({"p": PROMPT}, per_prompt, rho=0.0, strategy="best_vs_worst").items[0]
    assert (pair.chosen_index, pair.rejected_index, pair.label) == (0, 2, None)
    soft = labelled([pair], JudgeProbabilityLabels(), evidence)
    # chosen's mean of (4, 2 or 3): 3 or 3.5 w.p. 0.5 each, both above the rejected response's 1: a sure pair.
    assert soft[0].label == 1.0 and soft[0].chosen == pair.chosen
    second = replace(pair, rejected_index=1, rejected=RESPONSES[1].text)
    assert labelled([second], JudgeProbabilityLabels(), evidence)[0].label == pytest.approx(0.75)  # vs a written 3
    assert labelled([pair], HardLabels(), evidence) == [pair]
    stats = label_stats([*soft, pair])
    assert stats == {
        "pairs/actor_soft_labels": 1.0,
        "pairs/actor_label_mean": 1.0,
        "pairs/actor_labels_below_half": 0.0,
    }


class _Broken(HardLabels):
    def __init__(self, labels: list[float | None]) -> None:
        self.labels = labels

    def __call__(self, pairs, evidence):
        return self.labels


def test_a_labelling_that_breaks_the_contract_is_named() -> None:
    per_prompt = scored_responses(RESPONSES, [judgment(0, 0, 4.0), judgment(1, 0, 1.0)])
    pair = actor_pairs({"p": PROMPT}, per_prompt, rho=0.0, strategy="best_vs_worst").items[0]
    with pytest.raises(ValueError, match="gave 2 labels for 1 pairs"):
        labelled([pair], _Broken([0.5, 0.5]), label_evidence([], ()))
    with pytest.raises(ValueError, match=r"the label 1.5; a preference label is a probability in \[0, 1\]"):
        labelled([pair], _Broken([1.5]), label_evidence([], ()))
