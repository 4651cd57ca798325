"""The length-aware losses as config choices: `dpo/loss=rdpo` (R-DPO) and `dpo/loss=simpo` (SimPO) compose with every
experiment and trainer (both globbed, as in tests/test_experiments.py) and build through the components' checks;
their own values can be overridden (and swept) as `dpo.loss.<name>`; bad values are one config problem each. The
loss numbers themselves are in tests/core/test_losses.py.
"""

from __future__ import annotations

import pytest
from helpers import EXPERIMENTS, TRAINERS, compose, config_problems

from metareward.config.build import build_settings
from metareward.config.dpo import DPOSettings
from metareward.core.losses import DPOLoss, NLLRegularised, RDPOLoss, SimPOLoss
from metareward.schema.rules import read

LOSSES = {"rdpo": RDPOLoss, "simpo": SimPOLoss}


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_length_loss_composes_with_every_experiment_and_trainer(experiment: str, trainer: str, loss: str) -> None:
    cfg = compose(f"+experiment={experiment}", f"trainer={trainer}", f"dpo/loss={loss}")
    dpo, found = read(DPOSettings, cfg.dpo, "dpo")  # the DPO part of the config check, which needs no GPU
    dpo, refused = dpo.built()
    assert found + dpo.problems() + refused == []
    assert type(dpo.objective) is LOSSES[loss]


def test_the_shipped_values_and_their_overrides() -> None:
    rdpo = build_settings(compose("+experiment=smoke", "dpo/loss=rdpo", "dpo.beta=0.2")).dpo.objective
    assert isinstance(rdpo, RDPOLoss) and (rdpo.beta, rdpo.alpha, rdpo.label_smoothing) == (0.2, 0.01, 0.0)
    swept = build_settings(compose("+experiment=smoke", "dpo/loss=rdpo", "dpo.loss.alpha=0.05")).dpo.objective
    assert swept.alpha == 0.05
    smoothed = build_settings(compose("+experiment=smoke", "dpo/loss=rdpo", "dpo.label_smoothing=0.1")).dpo
    assert smoothed.objective.label_smoothing == 0.1  # R-DPO reads the shared cDPO value, as dpo/loss=dpo does
    simpo = build_settings(compose("+experiment=smoke", "dpo/loss=simpo", "dpo.beta=0.3")).dpo.objective
    assert isinstance(simpo, SimPOLoss) and (simpo.beta, simpo.gamma_beta_ratio, simpo.gamma) == (2.0, 0.5, 1.0)
    overridden = compose("+experiment=smoke", "dpo/loss=simpo", "dpo.loss.beta=2.5", "dpo.loss.gamma_beta_ratio=0.55")
    assert build_settings(overridden).dpo.objective.gamma == pytest.approx(1.375)
    cpo_simpo = build_settings(compose("+experiment=smoke", "dpo/loss=simpo", "dpo.nll_weight=1.0")).dpo.objective
    assert isinstance(cpo_simpo, NLLRegularised) and isinstance(cpo_simpo.base_loss, SimPOLoss)
    assert type(build_settings(compose("+experiment=smoke")).dpo.objective) is DPOLoss  # both are off by default


RDPO_REFUSED = "dpo.loss: metareward.core.losses.RDPOLoss refused its parameters: "
SIMPO_REFUSED = "dpo.loss: metareward.core.losses.SimPOLoss refused its parameters: "
NO_LENGTH_TERM = "; 0 turns the length term off (plain DPO)."


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            ["dpo/loss=rdpo", "dpo.loss.alpha=-0.5"],
            RDPO_REFUSED + "alpha must be a number >= 0, got -0.5" + NO_LENGTH_TERM,
        ),
        (
            ["dpo/loss=rdpo", "dpo.loss.alpha=abc"],
            RDPO_REFUSED + "alpha must be a number >= 0, got 'abc'" + NO_LENGTH_TERM,
        ),
        (["dpo/loss=rdpo", "dpo.beta=0"], "dpo.beta=0.0 must be > 0"),  # the shared value, reported once
        (["dpo/loss=simpo", "dpo.loss.beta=0"], SIMPO_REFUSED + "beta must be > 0, got 0; SimPO uses 2.0 to 2.5."),
        (["dpo/loss=simpo", "dpo.loss.beta=-2"], SIMPO_REFUSED + "beta must be > 0, got -2; SimPO uses 2.0 to 2.5."),
        (
            ["dpo/loss=simpo", "dpo.loss.gamma_beta_ratio=-1"],
            SIMPO_REFUSED + "gamma_beta_ratio must be a number >= 0, got -1; SimPO suggests 0.5 (range 0 to 1).",
        ),
        (
            ["dpo/loss=simpo", "dpo.label_smoothing=0.1"],
            "dpo.label_smoothing=0.1 is not read by the loss metareward.core.losses.SimPOLoss (dpo/loss); set it to 0,"
            + " or choose dpo/loss=dpo for conservative DPO",
        ),
    ],
)
def test_bad_values_are_one_config_problem_each(overrides: list[str], problem: str) -> None:
    assert config_problems("+experiment=smoke", *overrides) == [problem]
