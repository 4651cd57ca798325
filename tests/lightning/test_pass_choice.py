"""dpo.choose_pass_by: the iteration ends with the weights of its best pass. A scripted evaluation makes the middle
pass the best and checks that its weights come back; a whole run checks that the end-of-iteration evaluation then
reports exactly the chosen pass's figure; the config check refuses what cannot work."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import compose, config_problems

from metareward.lightning.handoff import ResultsBoard
from metareward.lightning.pass_choice import PassChoice
from metareward.run.training import train


class ScriptedEvaluation:
    """Gives the figures of a script, one per pass."""

    def __init__(self, scores: list[float]) -> None:
        self.scores, self.labels = list(scores), []

    def measure(self, label: str):
        self.labels.append(label)
        return {"lc_win_rate": self.scores.pop(0)}, [], []


def test_the_best_pass_s_weights_come_back_after_the_last(tmp_path: Path) -> None:
    module = torch.nn.Linear(2, 1)
    module.bias.requires_grad_(False)  # not trained: never copied or put back
    context = SimpleNamespace(run_dir=tmp_path, board=ResultsBoard())
    trainer = SimpleNamespace(
        num_training_batches=6,  # 3 passes of 2 batches
        current_epoch=0,
        global_step=0,
        loggers=[],
        is_global_zero=True,
        strategy=SimpleNamespace(broadcast=lambda value, src=0: value),
    )
    evaluation = ScriptedEvaluation([None, 0.70, 0.55])  # pass 1: not measured (a win rate without prompts, say)
    choice = PassChoice(context, evaluation, "lc_win_rate", passes=3)  # type: ignore[arg-type]
    choice.on_train_epoch_start(trainer, module)  # type: ignore[arg-type]
    weights = []
    for batch in range(6):
        with torch.no_grad():
            module.weight.fill_(float(batch))  # what the optimizer step of this batch did
        if batch % 2 == 1:
            weights.append(module.weight.detach().clone())
        choice.on_train_batch_end(trainer, module, None, None, batch)  # type: ignore[arg-type]
    assert evaluation.labels == ["iteration 1, pass 1", "iteration 1, pass 2", "iteration 1, pass 3"]
    assert torch.equal(module.weight, weights[1])  # pass 2 scored highest
    record = json.loads((tmp_path / "eval" / "iter_01" / "passes.json").read_text())
    assert record == {"figure": "lc_win_rate", "scores": [None, 0.70, 0.55], "chosen_pass": 2}
    assert context.board.by_source(1)["pass_choice"] == {
        "chosen_pass": 2.0,
        "pass_2_lc_win_rate": 0.70,
        "pass_3_lc_win_rate": 0.55,
    }


def test_without_any_measured_figure_the_last_pass_stays(tmp_path: Path) -> None:
    module = torch.nn.Linear(2, 1)
    context = SimpleNamespace(run_dir=tmp_path, board=ResultsBoard())
    trainer = SimpleNamespace(
        num_training_batches=2,
        current_epoch=0,
        global_step=0,
        loggers=[],
        is_global_zero=True,
        strategy=SimpleNamespace(broadcast=lambda value, src=0: value),
    )
    choice = PassChoice(context, ScriptedEvaluation([None, float("nan")]), "lc_win_rate", passes=2)  # type: ignore[arg-type]
    choice.on_train_epoch_start(trainer, module)  # type: ignore[arg-type]
    for batch in range(2):
        with torch.no_grad():
            module.weight.fill_(float(batch))
        choice.on_train_batch_end(trainer, module, None, None, batch)  # type: ignore[arg-type]
    assert torch.all(module.weight == 1.0)
    assert json.loads((tmp_path / "eval" / "iter_01" / "passes.json").read_text())["chosen_pass"] == 2


def test_a_whole_run_reports_the_chosen_pass(prompt_file: Path, tmp_path: Path) -> None:
    cfg = compose(
        "+experiment=smoke",
        f"data.path={prompt_file}",
        "num_iterations=1",
        "dpo.epochs_per_iteration=3",
        "dpo.choose_pass_by=seed_judge_score",
        "dpo.lr=5e-2",
        "callbacks.judge_quality=null",
        "callbacks.dashboard=null",
        output_dir=tmp_path,
    )
    train(cfg)
    record = json.loads((tmp_path / "eval" / "iter_01" / "passes.json").read_text())
    assert len(record["scores"]) == 3
    assert record["chosen_pass"] == record["scores"].index(max(record["scores"])) + 1
    # The same held-out prompts and seeds on the chosen weights: the iteration's own evaluation gives its score.
    reported = json.loads((tmp_path / "eval" / "iter_01" / "win_rate.json").read_text())["figures"]
    assert reported["seed_judge_score"] == pytest.approx(max(record["scores"]), abs=1e-9)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (("dpo.choose_pass_by=lc_win_rate",), "dpo.epochs_per_iteration=1: make it 2 or more"),
        (("dpo.choose_pass_by=win_rate", "dpo.epochs_per_iteration=2", "callbacks.win_rate=null"), "switches off"),
        (
            ("dpo.choose_pass_by=seed_judge_score", "dpo.epochs_per_iteration=2", "evaluation.seed_judge=false"),
            "set evaluation.seed_judge=true",
        ),
        (("dpo.choose_pass_by=win_rate", "dpo.epochs_per_iteration=2", "trainer=fsdp"), "not for the sharded"),
        (("dpo.choose_pass_by=accuracy", "dpo.epochs_per_iteration=2"), "is not one of"),
    ],
)
def test_the_config_check_refuses_a_choice_that_cannot_work(prompt_file: Path, overrides, problem: str) -> None:
    found = config_problems("+experiment=smoke", f"data.path={prompt_file}", *overrides)
    assert any(problem in p for p in found), found
