"""The preference loss, the optimizer and the LR schedule are components: a class named by `_target_` in one YAML
file of `conf/dpo/{loss,optimizer,lr_schedule}/`. A new one is one class plus one YAML file, here written into a
temporary config directory added to Hydra's search path; nothing else is edited. Also: the shipped components build
as before, their schedules give hand-worked rates, and every bad component is reported before any model loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import compose, config_problems
from hydra.errors import MissingConfigException
from torch import Tensor

from metareward.config.build import build_settings
from metareward.core.losses import DPOLoss, IPOLoss, NLLRegularised, PreferenceLoss
from metareward.lightning.dpo_module import DPOModule
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.tiny import build_tiny_model, build_tiny_tokenizer
from metareward.training.optim import ConstantSchedule, CosineSchedule, LinearSchedule


class HingeLoss(PreferenceLoss):
    """SLiC's hinge on the DPO log-ratio margin (Zhao et al. 2023, arXiv 2305.10425, Eq. 4, in TRL's form):
    loss = max(0, margin - beta * h), h = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))."""

    def __init__(self, beta: float, margin: float) -> None:
        super().__init__(beta)
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = float(margin)

    def pair_losses(self, chosen_logratios, rejected_logratios, chosen_lengths, rejected_lengths) -> Tensor:
        return torch.relu(self.margin - self.beta * (chosen_logratios - rejected_logratios))


@dataclass(frozen=True)
class HalvingSchedule:
    """Halves the rate every `every` steps of an iteration."""

    every: int

    def rate(self, step: int, total_steps: int, peak_lr: float) -> float:
        return peak_lr * 0.5 ** (step // self.every)


def config_dir(tmp_path: Path, files: dict[str, str]) -> str:
    """A config directory holding `files` (path -> YAML text), as the override adding it to Hydra's search path."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return f"hydra.searchpath=[file://{tmp_path}]"


HINGE_YAML = f"_target_: {__name__}.HingeLoss\nbeta: ${{dpo.beta}}\nmargin: 0.5\n"
SGD_YAML = "_target_: torch.optim.SGD\n_partial_: true\nlr: ${dpo.lr}\nmomentum: 0.9\n"
HALVING_YAML = f"_target_: {__name__}.HalvingSchedule\nevery: 2\n"


def one_batch() -> dict[str, Tensor]:
    """Two pairs: h = (-10 + 11) - (-12 + 11) = 2 and h = (-8 + 8) - (-7 + 8) = -1."""
    return {
        "policy_chosen_logps": torch.tensor([-10.0, -8.0]),
        "policy_rejected_logps": torch.tensor([-12.0, -7.0]),
        "ref_chosen_logps": torch.tensor([-11.0, -8.0]),
        "ref_rejected_logps": torch.tensor([-11.0, -8.0]),
        "chosen_lengths": torch.tensor([5, 5]),
        "rejected_lengths": torch.tensor([5, 5]),
    }


@pytest.mark.parametrize("how", ["yaml", "command_line"])
def test_a_new_loss_is_one_class_and_one_yaml_file(how: str, tmp_path: Path) -> None:
    if how == "yaml":
        overrides = [config_dir(tmp_path, {"dpo/loss/hinge.yaml": HINGE_YAML}), "dpo/loss=hinge"]
    else:  # or no file at all: the _target_ and the extra parameter on the command line
        overrides = [f"dpo.loss._target_={__name__}.HingeLoss", "~dpo.loss.label_smoothing", "+dpo.loss.margin=0.5"]
    settings = build_settings(compose("+experiment=smoke", *overrides))
    loss = settings.dpo.objective
    assert isinstance(loss, HingeLoss) and (loss.beta, loss.margin) == (0.1, 0.5)
    out = loss(**one_batch())
    # beta * h = 0.2 and -0.1: relu(0.5 - 0.2) = 0.3, relu(0.5 + 0.1) = 0.6, mean 0.45
    assert out.loss.item() == pytest.approx(0.45)
    assert out.chosen_rewards.tolist() == pytest.approx([0.1, 0.0])
    assert out.rejected_rewards.tolist() == pytest.approx([-0.1, 0.1])
    wrapped = build_settings(compose("+experiment=smoke", *overrides, "dpo.nll_weight=1.0")).dpo.objective
    assert isinstance(wrapped, NLLRegularised) and isinstance(wrapped.base_loss, HingeLoss)
    assert wrapped(**one_batch()).loss.item() == pytest.approx(0.45 + (10 / 5 + 8 / 5) / 2)  # + mean NLL per token


def test_a_new_components_parameters_are_checked_up_front(tmp_path: Path) -> None:
    search = config_dir(tmp_path, {"dpo/loss/hinge.yaml": HINGE_YAML})
    assert config_problems("+experiment=smoke", search, "dpo/loss=hinge", "dpo.loss.margin=-1") == [
        f"dpo.loss: {__name__}.HingeLoss refused its parameters: margin must be >= 0, got -1"
    ]
    (problem,) = config_problems("+experiment=smoke", search, "dpo/loss=hinge", "~dpo.loss.margin")
    assert (
        problem.startswith(f"dpo.loss: {__name__}.HingeLoss does not accept these parameters") and "margin" in problem
    )


def test_a_new_optimizer_and_schedule_drive_the_dpo_module(tmp_path: Path) -> None:
    search = config_dir(tmp_path, {"dpo/optimizer/sgd.yaml": SGD_YAML, "dpo/lr_schedule/halving.yaml": HALVING_YAML})
    cfg = compose("+experiment=smoke", search, "dpo/optimizer=sgd", "dpo/lr_schedule=halving", "dpo.lr=0.4")
    settings = build_settings(cfg)
    adapters = RoleAdapters(build_tiny_model(build_tiny_tokenizer(), seed=0), AdapterSpec(r=2, alpha=4))
    module = DPOModule(adapters, settings.dpo.objective, settings.dpo.optim)
    optimizer = module.configure_optimizers()
    assert type(optimizer) is torch.optim.SGD and optimizer.defaults["momentum"] == 0.9
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in adapters.adapter_parameters()}
    module.trainer = SimpleNamespace(optimizers=[optimizer])  # what the hooks read of Lightning's Trainer
    module.iteration_steps = 6
    rates = []
    for _ in range(6):
        module.on_train_batch_start({}, 0)
        rates.append(optimizer.param_groups[0]["lr"])
        module.on_before_optimizer_step(optimizer)
    assert rates == pytest.approx([0.4, 0.4, 0.2, 0.2, 0.1, 0.1])


def test_shipped_components_build_as_configured() -> None:
    dpo = build_settings(compose("+experiment=smoke", "dpo.beta=0.2", "dpo.label_smoothing=0.1")).dpo
    loss, optim = dpo.objective, dpo.optim
    assert isinstance(loss, DPOLoss) and (loss.beta, loss.label_smoothing) == (0.2, 0.1)
    assert optim.lr_schedule == ConstantSchedule(warmup_steps=0) and optim.reset_each_iteration
    optimizer = optim.optimizer([torch.nn.Parameter(torch.zeros(1))])
    assert type(optimizer) is torch.optim.AdamW and (optimizer.defaults["lr"], optimizer.defaults["weight_decay"]) == (
        2e-4,
        0.0,
    )
    ipo = build_settings(compose("+experiment=smoke", "dpo/loss=ipo", "dpo.nll_weight=0.5")).dpo.objective
    assert isinstance(ipo, NLLRegularised) and isinstance(ipo.base_loss, IPOLoss) and ipo.weight == 0.5
    schedule = build_settings(compose("+experiment=smoke", "dpo/lr_schedule=cosine", "dpo.min_lr=1e-5")).dpo
    assert schedule.optim.lr_schedule == CosineSchedule(warmup_steps=0, min_lr=1e-5)


def test_schedules_give_the_hand_worked_rates() -> None:
    # 6 steps, 2 of warm-up to lr 1: 0.5, 1; then progress 0, 1/3, 2/3, 1 over the remaining 4 steps.
    warm = [0.5, 1.0]
    assert [ConstantSchedule(2).rate(s, 6, 1.0) for s in range(6)] == pytest.approx(warm + [1.0] * 4)
    assert [LinearSchedule(2, 0.0).rate(s, 6, 1.0) for s in range(6)] == pytest.approx(warm + [1, 2 / 3, 1 / 3, 0])
    cosine = [0.5 * (1 + math.cos(math.pi * p)) for p in (0, 1 / 3, 2 / 3, 1)]  # 1, 0.75, 0.25, 0
    assert [CosineSchedule(2, 0.0).rate(s, 6, 1.0) for s in range(6)] == pytest.approx(warm + cosine)
    assert cosine == pytest.approx([1.0, 0.75, 0.25, 0.0])
    assert LinearSchedule(0, 0.1).rate(9, 10, 1.0) == pytest.approx(0.1)  # decays to min_lr, not 0
    with pytest.raises(ValueError, match="warmup_steps"):
        ConstantSchedule(-1)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (["dpo.loss=ipo"], "dpo.loss='ipo' names no class; select one with dpo/loss=<name> (a YAML file in conf/"),
        (["dpo.lr_schedule=cosine"], "dpo.lr_schedule='cosine' names no class; select one with dpo/lr_schedule=<name>"),
        (["dpo/loss=ipo", "dpo.label_smoothing=0.1"], "dpo.label_smoothing=0.1 is not read by the loss"),
        (["dpo.label_smoothing=0.5"], "dpo.label_smoothing=0.5 must be in [0, 0.5)"),
        (["dpo.beta=0"], "dpo.beta=0.0 must be > 0"),
        (["dpo.nll_weight=-1"], "dpo.nll_weight=-1.0 must be >= 0"),
        (["dpo.min_lr=1"], "dpo.min_lr=1.0 must be in [0, dpo.lr]"),
        (["dpo.loss._target_=metareward.core.losses.KTOLoss"], "dpo.loss._target_='metareward.core.losses.KTOLoss' "),
        (["dpo.loss._target_=no_such_package.Loss"], "does not import (No module named 'no_such_package')"),
        (["+dpo.optimizer.nesterov=true"], "dpo.optimizer: torch.optim.AdamW does not accept these parameters"),
        (["dpo.optimizer._target_=torch.optim.SGD", "+dpo.optimizer.momentum=-1"], "Invalid momentum value: -1"),
        (["dpo.optimizer._partial_=false"], "dpo.optimizer needs `_partial_: true`"),
        (["dpo.lr_schedule._target_=builtins.dict"], "dpo.lr_schedule: builtins.dict.rate(step, total_steps, peak_lr)"),
        (["dpo.loss._target_=torch.nn.Identity"], "is not a metareward.core.losses.PreferenceLoss"),
    ],
)
def test_each_bad_component_is_one_named_problem(overrides: list[str], problem: str) -> None:
    problems = config_problems("+experiment=smoke", *overrides)
    assert len(problems) == 1 and problem in problems[0], problems


def test_bad_components_are_reported_with_every_other_problem() -> None:
    problems = config_problems(
        "+experiment=smoke", "num_iterations=two", "dpo.loss=ipo", "dpo.lr_schedule._target_=nowhere.Schedule"
    )
    assert len(problems) == 3 and problems[0].startswith("num_iterations='two'"), problems
    assert problems[1].startswith("dpo.loss='ipo' names no class")
    assert problems[2].startswith("dpo.lr_schedule._target_='nowhere.Schedule' does not import")


def test_an_unknown_option_is_refused_by_hydra_with_the_options() -> None:
    with pytest.raises(MissingConfigException, match="Could not find 'dpo/loss/kto'") as error:
        compose("+experiment=smoke", "dpo/loss=kto")
    assert "Available options in 'dpo/loss'" in str(error.value) and "ipo" in str(error.value)
