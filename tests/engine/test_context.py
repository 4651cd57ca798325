"""The one stage runner of an iteration, without a model: each rank's share gathered in one process's order and
stored once, a verdict stage calibrated over the whole iteration's verdicts, a finished stage read back on resume;
and the variants a run's choices add to the iteration, in the order they run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from metareward.core.pair_labels import ConsistencyLabels, HardLabels
from metareward.engine.context import IterationContext
from metareward.engine.judging import winner_line
from metareward.engine.ranking import ImplicitRewardRanking, PointwiseRanking
from metareward.engine.rejections import AnchoredRejections, OwnRejections
from metareward.engine.settings import EngineSettings
from metareward.engine.sharding import Shard
from metareward.engine.variants import AnchoredAnswers, KeptWeights, PreviousJudge, Variants
from metareward.engine.weights_history import WeightsHistory
from metareward.storage.artifacts import read_records
from metareward.storage.records import MetaJudgmentRecord, PhaseResult, PromptRecord, ResponseRecord
from metareward.storage.run_layout import iteration_dir

PROMPTS = [PromptRecord(f"p{i}", f"Question {i}?") for i in range(3)]


def context(run_dir: Path, shard: Shard, reuse: bool = False, calibrate: bool = False) -> IterationContext:
    settings = SimpleNamespace(calibrate_position=calibrate)  # all the stage runner reads of the settings
    return IterationContext.start(None, settings, 1, PROMPTS, run_dir, reuse, shard)  # type: ignore[arg-type]


def answers(share: list[PromptRecord]) -> PhaseResult:
    """Two answers per prompt of the share, the second first: the runner, not the maker, sets the order."""
    records = [ResponseRecord(p.id, k, f"{p.id}/{k}", 1, True) for p in share for k in (1, 0)]
    return PhaseResult(records, {"empty": 1}, 1)


def test_each_ranks_share_is_gathered_in_one_process_order_and_rank_zero_stores_it(tmp_path: Path) -> None:
    other_rank = answers([PROMPTS[1]])
    rank_zero = Shard(0, 2, exchange=lambda mine: [mine, (other_rank.records, other_rank.drops, 1)])
    made = context(tmp_path, rank_zero).stage("responses", ResponseRecord, answers, PROMPTS)
    expected = [(p.id, k) for p in PROMPTS for k in (0, 1)]
    assert [(r.prompt_id, r.index) for r in made.records] == expected
    assert made.drops == {"empty": 2} and made.parse_failures == 2
    stored = read_records(iteration_dir(tmp_path, 1) / "responses.jsonl", ResponseRecord)
    assert stored == made.records

    rank_one = Shard(1, 2, exchange=lambda mine: [(other_rank.records, {}, 0), mine])
    context(tmp_path / "one", rank_one).stage("responses", ResponseRecord, answers, PROMPTS)
    assert not (iteration_dir(tmp_path / "one", 1) / "responses.jsonl").exists()  # only rank 0 writes

    def never(share: list[PromptRecord]) -> PhaseResult:
        raise AssertionError("a finished stage is read back, not made again")

    resumed = context(tmp_path, Shard(), reuse=True)
    again = resumed.stage("responses", ResponseRecord, never, PROMPTS)
    assert again == made and resumed.store.reused == ["responses"]


def verdicts(pairs: list[tuple[int, float]]) -> list[MetaJudgmentRecord]:
    return [MetaJudgmentRecord("p0", 0, first, 9, "x", 1, "probability", odds) for first, odds in pairs]


@pytest.mark.parametrize("calibrate", [True, False])
def test_a_verdict_stage_is_calibrated_over_every_ranks_verdicts(tmp_path: Path, calibrate: bool) -> None:
    # Rank 0 alone has the median 1.25; with rank 1's verdict the iteration's median is 1.0.
    theirs = verdicts([(1, 1.0)])
    shard = Shard(0, 2, exchange=lambda mine: [mine, (theirs, {}, 0)])
    line = winner_line("Winner", "Winner: Judgment")
    ours = PhaseResult(verdicts([(0, 0.5), (2, 2.0)]), {})
    run = context(tmp_path, shard, calibrate=calibrate)
    found = run.verdict_stage("meta_judgments", MetaJudgmentRecord, lambda share: ours, [], line)
    if calibrate:
        assert [v.verdict for v in found.records] == [-1, 0, 1]
        assert found.records[0].text == "x\nWinner: Judgment B"
    else:
        assert [v.verdict for v in found.records] == [1, 1, 1] and found.records[0].text == "x"


def choices(rejections: object, labels: object, ranking: object) -> SimpleNamespace:
    """The settings `Variants.of` reads."""
    found = SimpleNamespace(rejections=rejections, pair_labels=labels, ranking=ranking)
    found.kept_roles = lambda: EngineSettings.kept_roles(found)  # type: ignore[arg-type]
    return found


def test_the_variants_follow_the_choices_anchors_first() -> None:
    plain = choices(OwnRejections(), HardLabels(), PointwiseRanking())
    assert Variants.of(plain, None).chosen == ()  # type: ignore[arg-type]
    history = WeightsHistory(adapters=None)  # type: ignore[arg-type]
    both = choices(AnchoredRejections(), ConsistencyLabels(), PointwiseRanking())
    chosen = Variants.of(both, history).chosen  # type: ignore[arg-type]
    # the judge's weights are kept as the iteration begins; the previous judge judges the anchors too
    assert [type(v) for v in chosen] == [AnchoredAnswers, KeptWeights, PreviousJudge]
    assert chosen[1].roles == ("judge",)
    with pytest.raises(ValueError, match=r"read earlier versions of \['judge'\]: pass the weights history"):
        Variants.of(both, None)  # type: ignore[arg-type]


def test_a_ranking_without_the_judge_keeps_the_actor_and_asks_no_previous_judge() -> None:
    history = WeightsHistory(adapters=None)  # type: ignore[arg-type]
    cream = choices(OwnRejections(), ConsistencyLabels(), ImplicitRewardRanking())
    chosen = Variants.of(cream, history).chosen  # type: ignore[arg-type]
    assert [type(v) for v in chosen] == [KeptWeights] and chosen[0].roles == ("actor",)
    hard = choices(OwnRejections(), HardLabels(), ImplicitRewardRanking())
    assert [v.roles for v in Variants.of(hard, history).chosen] == [("actor",)]  # type: ignore[arg-type,attr-defined]
