"""The hand-offs between the Lightning objects go through the run's RunContext: the DataModule's data and an
evaluation callback's figures reach summary.json through it, the iteration number has one source, and callbacks
listed in the wrong order are put right by the run or refused."""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from helpers import REPO_ROOT, default_engine_settings, quiet_cpu_trainer

from metareward.core.losses import DPOLoss
from metareward.core.prompts import ADDITIVE_FIVE_POINT
from metareward.engine.iteration import IterationData
from metareward.engine.prompt_pool import PromptPool
from metareward.generation.sampler import RoleSettings, SamplingSettings
from metareward.generation.spec import GenerationSpec
from metareward.lightning import datamodule as datamodule_module
from metareward.lightning.callbacks import AdapterCheckpoint, IterationSummary, ResumeCheckpoint
from metareward.lightning.datamodule import SelfJudgedDataModule
from metareward.lightning.dpo_module import DPOModule
from metareward.lightning.eval_callbacks import DashboardCallback, JudgeQualityCallback
from metareward.lightning.handoff import ResultsBoard, RunContext, in_run_order, iteration_of
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.tiny import build_tiny_model, build_tiny_tokenizer
from metareward.storage.records import PairRecord
from metareward.training.collate import PairCollator
from metareward.training.optim import ConstantSchedule, OptimSettings

LABELLED_PAIRS = REPO_ROOT / "data" / "judge_quality" / "labelled_pairs.jsonl"
PAIRS = [PairRecord("actor", f"a{i}", f"Question {i}?", "Because it is so. " * (i + 1), "No") for i in range(2)]
EPOCHS = 3


def stub_iteration_data(made_for: list[int], *args, **kwargs) -> IterationData:
    """The data engine's stand-in: fixed pairs for the iteration it is asked for (recorded in `made_for`)."""
    iteration = args[3]
    made_for.append(iteration)
    stats = {"pairs/actor_count": float(len(PAIRS)), "pairs/judge_count": 0.0, "data/stages_reused": 0.0}
    return IterationData(iteration, list(PAIRS), stats)


def tiny_run(run_dir: Path) -> tuple[RunContext, DPOModule, SelfJudgedDataModule]:
    """A context with the tiny model attached, the DPO module, and the DataModule built with that context."""
    tokenizer = build_tiny_tokenizer()
    adapters = RoleAdapters(build_tiny_model(tokenizer, seed=0, hidden_size=64), AdapterSpec(r=4, alpha=8))
    role = RoleSettings(SamplingSettings(temperature=1.0, top_p=1.0, max_new_tokens=4), batch_size=2)
    settings = default_engine_settings(seed=0, actor=role, judge=role, meta_judge=role, progress=False)
    context = RunContext.for_run(run_dir, GenerationSpec(), settings)
    context.attach_model(adapters, tokenizer)
    optim = OptimSettings(partial(torch.optim.AdamW, lr=1e-3), ConstantSchedule(0), reset_each_iteration=True)
    module = DPOModule(adapters, DPOLoss(beta=0.1), optim)
    data = SelfJudgedDataModule(context, settings, PromptPool((), "stub"), PairCollator(tokenizer), batch_size=2)
    return context, module, data


def fit(module: DPOModule, data: SelfJudgedDataModule, callbacks: list[L.Callback], epochs: int) -> None:
    trainer = quiet_cpu_trainer(max_epochs=epochs, callbacks=callbacks)
    trainer.fit(module, datamodule=data)


def judge_quality(context: RunContext) -> JudgeQualityCallback:
    return JudgeQualityCallback(
        context, str(LABELLED_PAIRS), num_pairs=2, batch_size=4, max_prompt_tokens=1536, tie_tolerance=0.0
    )


@pytest.fixture(scope="module")
def three_iterations(tmp_path_factory: pytest.TempPathFactory):
    """Three iterations with the callbacks listed summary-first and put in run order as the run does."""
    run_dir = tmp_path_factory.mktemp("handoff")
    made_for: list[int] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datamodule_module, "make_iteration_data", partial(stub_iteration_data, made_for))
        context, module, data = tiny_run(run_dir)
        listed = [
            IterationSummary(context, "handoff"),
            ResumeCheckpoint(context),
            DashboardCallback(context, str(run_dir / "plots"), num_table_rows=8, run_name="run"),
            judge_quality(context),
            AdapterCheckpoint(context, run_dir / "checkpoints"),
        ]
        fit(module, data, in_run_order(listed), EPOCHS)
    summary = json.loads((run_dir / "summary.json").read_text())
    return SimpleNamespace(run_dir=run_dir, context=context, module=module, made_for=made_for, summary=summary)


def test_an_evaluation_callbacks_figures_reach_the_summary_through_the_board(three_iterations) -> None:
    run = three_iterations
    assert run.summary["status"] == "finished"
    for record in run.summary["iterations"]:
        published = run.context.board.by_source(record["iteration"])
        assert set(published) == {"judge_quality"}
        figures = published["judge_quality"]
        assert {"judge_accuracy", "judge_spearman", "seconds_judge_quality"} <= set(figures)
        assert record["eval"] == pytest.approx(figures, nan_ok=True)
        # The DataModule's data reached the summary through the context too.
        assert record["actor_pairs"] == len(PAIRS) and record["pairs_digest"]
        assert {"reference", "train"} <= set(record["phases"]) and record["stats"]["data/world_size"] == 1.0
    assert not hasattr(run.module, "eval_results")  # nothing goes through the module's attributes


def test_the_iteration_number_comes_from_one_function_for_epochs_0_to_2(three_iterations) -> None:
    assert [iteration_of(SimpleNamespace(current_epoch=epoch)) for epoch in range(EPOCHS)] == [1, 2, 3]
    run = three_iterations
    assert run.made_for == [1, 2, 3]
    assert [record["iteration"] for record in run.summary["iterations"]] == [1, 2, 3]
    assert [run.context.data_for(t) is not None for t in (2, 3)] == [False, True]  # the latest iteration's data
    assert sorted(p.name for p in (run.run_dir / "checkpoints").glob("iter_*")) == ["iter_01", "iter_02", "iter_03"]
    assert sorted(p.name for p in (run.run_dir / "eval").glob("iter_*")) == ["iter_01", "iter_02", "iter_03"]
    # No other module of the package derives the number from Lightning's epoch counter.
    package = REPO_ROOT / "src" / "metareward"
    deriving = [p.relative_to(package) for p in package.rglob("*.py") if re.search(r"current_epoch", p.read_text())]
    assert deriving == [Path("lightning/handoff.py")]


def test_the_run_order_puts_every_evaluation_before_the_summary(tmp_path: Path) -> None:
    context = RunContext(tmp_path, lambda adapters, tokenizer, processes: None, ADDITIVE_FIVE_POINT)
    summary, resume = IterationSummary(context, "order"), ResumeCheckpoint(context)
    evaluation, dashboard = (
        judge_quality(context),
        DashboardCallback(context, str(tmp_path / "plots"), num_table_rows=8, run_name="run"),
    )
    saved, other = AdapterCheckpoint(context, tmp_path), L.Callback()
    ordered = in_run_order([resume, summary, dashboard, evaluation, other, saved])
    assert ordered == [saved, evaluation, other, dashboard, summary, resume]


def test_the_board_refuses_figures_for_an_iteration_the_summary_has_written() -> None:
    board = ResultsBoard()
    board.publish(1, "win_rate", {"win_rate": 50.0})
    assert board.seal(1) == {"win_rate": 50.0}
    with pytest.raises(
        RuntimeError, match=r"'judge_quality' published figures for iteration 1 after the summary.*in_run_order"
    ):
        board.publish(1, "judge_quality", {"judge_accuracy": 0.5})
    with pytest.raises(ValueError, match=r"'other' publishes \['win_rate'\] for iteration 2"):
        board.publish(2, "win_rate", {"win_rate": 40.0})
        board.publish(2, "other", {"win_rate": 60.0})


def test_a_trainer_with_the_summary_before_an_evaluation_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(datamodule_module, "make_iteration_data", partial(stub_iteration_data, []))
    context, module, data = tiny_run(tmp_path)
    wrong_order = [IterationSummary(context, "wrong"), judge_quality(context)]  # not put in run order
    with pytest.raises(RuntimeError, match="after the summary wrote that iteration"):
        fit(module, data, wrong_order, 1)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"
