"""Preference losses: a hand-worked number, gradients, and agreement with TRL 1.16 on identical log-probs.

TRL 1.16 has no standalone DPO loss function: the loss is computed inside `DPOTrainer._compute_loss(model, inputs,
return_outputs)`, which runs the model itself. We call that method on a trainer built with `object.__new__`
(no model loading, no datasets) holding only the attributes the method reads, and pass a stand-in model whose
per-token log-probs sum to the chosen test values. Reference log-probs go in as precomputed
(`precompute_ref_logps=True`), so TRL reads them straight from the inputs.

TRL 1.16's DPO "sigmoid" loss ignores `label_smoothing` (it only feeds the "robust" and "exo_pair" losses), so the
conservative-DPO form is compared against `CPOTrainer.cpo_loss` (sigmoid), which applies the same smoothing
formula to a log-prob difference: fed the policy-minus-reference log-ratios, it is exactly cDPO.

SimPO is compared against `CPOTrainer.cpo_loss` with `loss_type="simpo"`, fed the mean token log-probs (TRL averages
them itself before that call for SimPO); TRL's `simpo_gamma` is the paper's gamma, our beta * gamma_beta_ratio.
TRL 1.16 has no R-DPO (its DPO `ld_alpha` is LD-DPO, a different length treatment), so R-DPO is checked by hand and
against DPO, which it equals at alpha = 0 or with equal lengths.

TRL is optional (the `bench` extra): only the comparisons with it skip without it (`importorskip` inside them);
the hand-worked numbers, gradients and helpers always run.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from metareward.core.losses import (
    DPOLoss,
    IPOLoss,
    NLLRegularised,
    PreferenceLossOutput,
    RDPOLoss,
    SimPOLoss,
    reward_accuracy,
    reward_margin,
    with_nll_term,
)


def _trl_trainer(name: str) -> type:
    """TRL's DPOTrainer or CPOTrainer; skips the calling test when TRL is not installed."""
    pytest.importorskip("trl")
    if name == "dpo":
        from trl.trainer.dpo_trainer import DPOTrainer

        return DPOTrainer
    with warnings.catch_warnings():  # trl.experimental warns on import that its API may change
        warnings.simplefilter("ignore")
        from trl.experimental.cpo import CPOTrainer
    return CPOTrainer


class _SingleProcessAccelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    gather_for_metrics = gather


def _random_logps(batch: int, seed: int, equal_lengths: bool = False) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    if equal_lengths:
        lengths = torch.full((2, batch), 7)
    else:
        lengths = torch.randint(1, 30, (2, batch), generator=generator)
    # Summed log-probs roughly proportional to length, with the policy a little off the reference.
    ref = -lengths * (0.5 + 2.0 * torch.rand(2, batch, generator=generator))
    policy = ref + 3.0 * torch.randn(2, batch, generator=generator)
    return {
        "policy_chosen_logps": policy[0].double(),
        "policy_rejected_logps": policy[1].double(),
        "ref_chosen_logps": ref[0].double(),
        "ref_rejected_logps": ref[1].double(),
        "chosen_lengths": lengths[0],
        "rejected_lengths": lengths[1],
    }


def _trl_dpo(loss_types: list[str], weights: list[float], beta: float, logps: dict[str, torch.Tensor]):
    """TRL's DPOTrainer._compute_loss on the given summed log-probs; returns (loss, logged metrics)."""
    trainer = object.__new__(_trl_trainer("dpo"))
    trainer.model = SimpleNamespace(training=True)  # only `.training` is read, to pick the metrics split
    trainer.accelerator = _SingleProcessAccelerator()
    trainer.aux_loss_enabled = False
    trainer.precompute_ref_logps = True
    trainer.ld_alpha = None
    trainer.f_divergence_type = "reverse_kl"
    trainer.loss_types, trainer.loss_weights = loss_types, weights
    trainer.beta, trainer.label_smoothing, trainer.use_weighting = beta, 0.0, False
    trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    trainer._total_train_tokens, trainer._tp_size = 0, 1

    lengths = torch.cat([logps["chosen_lengths"], logps["rejected_lengths"]])
    sums = torch.cat([logps["policy_chosen_logps"], logps["policy_rejected_logps"]])
    width = int(lengths.max()) + 2
    positions = torch.arange(width).expand(len(lengths), width)
    completion_mask = (positions >= width - lengths[:, None]).long()  # left padded: completion at the end
    # Spread each row's sum evenly over its completion tokens (TRL shifts by one: position t predicts t + 1).
    per_token = completion_mask[:, 1:].double() * (sums / lengths)[:, None]
    zeros = torch.zeros_like(per_token)
    model = lambda **_: SimpleNamespace(log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())
    inputs = {
        "input_ids": torch.zeros(len(lengths), width, dtype=torch.long),
        "attention_mask": torch.ones(len(lengths), width, dtype=torch.long),
        "completion_mask": completion_mask,
        "ref_chosen_logps": logps["ref_chosen_logps"],
        "ref_rejected_logps": logps["ref_rejected_logps"],
    }
    loss = trainer._compute_loss(model, inputs, return_outputs=False)
    return loss, trainer._metrics["train"]


def _trl_cdpo(beta: float, label_smoothing: float, logps: dict[str, torch.Tensor]) -> torch.Tensor:
    """Conservative DPO via TRL's CPOTrainer.cpo_loss, given the log-ratios in place of the policy log-probs."""
    trainer = object.__new__(_trl_trainer("cpo"))
    trainer.alpha, trainer.loss_type = 0.0, "sigmoid"
    trainer.beta, trainer.label_smoothing = beta, label_smoothing
    trainer.accelerator = _SingleProcessAccelerator()
    losses, _, _ = trainer.cpo_loss(
        logps["policy_chosen_logps"] - logps["ref_chosen_logps"],
        logps["policy_rejected_logps"] - logps["ref_rejected_logps"],
    )
    return losses.mean()


@pytest.mark.parametrize("beta", [0.01, 0.1, 0.5, 2.0])
def test_dpo_matches_trl(beta):
    logps = _random_logps(batch=16, seed=int(beta * 100))
    ours = DPOLoss(beta)(**logps)
    trl_loss, metrics = _trl_dpo(["sigmoid"], [1.0], beta, logps)
    torch.testing.assert_close(ours.loss, trl_loss)
    assert ours.chosen_rewards.mean().item() == pytest.approx(metrics["rewards/chosen"][0], abs=1e-12)
    assert ours.rejected_rewards.mean().item() == pytest.approx(metrics["rewards/rejected"][0], abs=1e-12)
    assert ours.reward_accuracy.item() == pytest.approx(metrics["rewards/accuracies"][0])
    assert ours.reward_margin.item() == pytest.approx(metrics["rewards/margins"][0], abs=1e-12)


@pytest.mark.parametrize(("beta", "label_smoothing"), [(0.1, 0.0), (0.1, 0.1), (0.5, 0.3), (1.0, 0.49)])
def test_conservative_dpo_matches_trl_smoothed_sigmoid(beta, label_smoothing):
    logps = _random_logps(batch=16, seed=3)
    ours = DPOLoss(beta, label_smoothing=label_smoothing)(**logps)
    torch.testing.assert_close(ours.loss, _trl_cdpo(beta, label_smoothing, logps))


@pytest.mark.parametrize("beta", [0.05, 0.1, 1.0])
def test_ipo_matches_trl_length_normalised(beta):
    logps = _random_logps(batch=16, seed=5)  # unequal lengths, so the normalisation matters
    ours = IPOLoss(beta)(**logps)
    trl_loss, metrics = _trl_dpo(["ipo"], [1.0], beta, logps)
    torch.testing.assert_close(ours.loss, trl_loss)
    assert ours.reward_margin.item() == pytest.approx(metrics["rewards/margins"][0], abs=1e-12)
    unnormalised = IPOLoss(beta)(**{**logps, "chosen_lengths": torch.ones(16), "rejected_lengths": torch.ones(16)})
    assert not torch.isclose(unnormalised.loss, trl_loss)


def _trl_simpo(beta: float, gamma: float, logps: dict[str, torch.Tensor]):
    """TRL's SimPO loss (CPOTrainer.cpo_loss, loss_type="simpo") on the mean token log-probs."""
    trainer = object.__new__(_trl_trainer("cpo"))
    trainer.alpha, trainer.loss_type = 0.0, "simpo"  # alpha is AlphaPO's reward transform here, 0 = off
    trainer.beta, trainer.simpo_gamma, trainer.label_smoothing = beta, gamma, 0.0
    trainer.accelerator = _SingleProcessAccelerator()
    return trainer.cpo_loss(
        logps["policy_chosen_logps"] / logps["chosen_lengths"],
        logps["policy_rejected_logps"] / logps["rejected_lengths"],
    )


@pytest.mark.parametrize(("beta", "gamma_beta_ratio"), [(2.0, 0.5), (2.5, 0.55), (10.0, 0.0), (0.5, 1.0)])
def test_simpo_matches_trl(beta, gamma_beta_ratio):
    logps = _random_logps(batch=16, seed=11)  # unequal lengths, so the normalisation matters
    ours = SimPOLoss(beta, gamma_beta_ratio)(**logps)
    losses, chosen_rewards, rejected_rewards = _trl_simpo(beta, beta * gamma_beta_ratio, logps)
    torch.testing.assert_close(ours.loss, losses.mean())
    torch.testing.assert_close(ours.chosen_rewards, chosen_rewards)
    torch.testing.assert_close(ours.rejected_rewards, rejected_rewards)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_rdpo_with_alpha_zero_or_equal_lengths_is_dpo(label_smoothing):
    logps = _random_logps(batch=16, seed=13)
    dpo = DPOLoss(0.1, label_smoothing)(**logps)
    rdpo = RDPOLoss(0.1, alpha=0.0, label_smoothing=label_smoothing)(**logps)
    torch.testing.assert_close(rdpo.loss, dpo.loss, rtol=0, atol=0)
    torch.testing.assert_close(rdpo.chosen_rewards, dpo.chosen_rewards, rtol=0, atol=0)
    equal = _random_logps(batch=16, seed=13, equal_lengths=True)
    torch.testing.assert_close(
        RDPOLoss(0.1, 0.5, label_smoothing)(**equal).loss, DPOLoss(0.1, label_smoothing)(**equal).loss
    )
    assert not torch.isclose(RDPOLoss(0.1, 0.01, label_smoothing)(**logps).loss, dpo.loss)


def _one_pair(chosen_length: int, rejected_length: int) -> dict[str, torch.Tensor]:
    """h = (-10 + 11) - (-12 + 11) = 2, so beta * h = 0.2 at beta 0.1, with the given lengths."""
    values = {"policy_chosen_logps": -10.0, "policy_rejected_logps": -12.0, "ref_chosen_logps": -11.0}
    pair = {key: torch.tensor([value]) for key, value in values.items()}
    pair["ref_rejected_logps"] = torch.tensor([-11.0])
    pair["chosen_lengths"], pair["rejected_lengths"] = torch.tensor([chosen_length]), torch.tensor([rejected_length])
    return pair


def test_hand_worked_rdpo_number():
    # Both pairs have beta * h = 0.2 (DPO: log(1 + e^-0.2) = 0.598139 each). alpha = 0.01:
    #   pair 1, |y_w| = 10, |y_l| = 30: logit = 0.2 + 0.01 * (10 - 30) = 0.0 -> loss = log 2         = 0.693147
    #   pair 2, |y_w| = 30, |y_l| = 10: logit = 0.2 + 0.01 * (30 - 10) = 0.4 -> loss = log(1 + e^-0.4) = 0.513015
    # mean (0.693147 + 0.513015) / 2 = 0.603081; the rewards are DPO's, +-0.1, margin 0.2.
    short, long = _one_pair(10, 30), _one_pair(30, 10)
    batch = {key: torch.cat([short[key], long[key]]) for key in short}
    loss = RDPOLoss(beta=0.1, alpha=0.01)
    assert loss(**short).loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert loss(**long).loss.item() == pytest.approx(0.513015, abs=1e-6)
    out = loss(**batch)
    assert out.loss.item() == pytest.approx(0.603081, abs=1e-6)
    assert out.chosen_rewards.tolist() == pytest.approx([0.1, 0.1])
    assert out.rejected_rewards.tolist() == pytest.approx([-0.1, -0.1])
    assert (out.reward_accuracy.item(), out.reward_margin.item()) == (1.0, pytest.approx(0.2))
    # A longer chosen answer lowers the loss, and so its gradient: length that explains the preference is not
    # credited to the policy (Park et al. 2024's sign).
    assert loss(**long).loss < DPOLoss(0.1)(**long).loss < loss(**short).loss


def test_hand_worked_simpo_number():
    # beta = 2, gamma_beta_ratio = 0.5, so gamma = 1. Mean token log-probs:
    #   pair 1: chosen -10 / 5 = -2, rejected -30 / 10 = -3: logit = 2 * (-2 + 3) - 1 = 1  -> log(1 + e^-1) = 0.313262
    #   pair 2: chosen -12 / 4 = -3, rejected  -8 / 4  = -2: logit = 2 * (-3 + 2) - 1 = -3 -> log(1 + e^3)  = 3.048587
    # mean 1.680925; rewards 2 * mean log-prob: chosen [-4, -6], rejected [-6, -4]; accuracy 0.5, margin 0.
    batch = {
        "policy_chosen_logps": torch.tensor([-10.0, -12.0]),
        "policy_rejected_logps": torch.tensor([-30.0, -8.0]),
        "ref_chosen_logps": torch.tensor([-1.0, -50.0]),  # ignored: SimPO is reference-free
        "ref_rejected_logps": torch.tensor([-99.0, -2.0]),
        "chosen_lengths": torch.tensor([5, 4]),
        "rejected_lengths": torch.tensor([10, 4]),
    }
    loss = SimPOLoss(beta=2.0, gamma_beta_ratio=0.5)
    out = loss(**batch)
    assert loss.gamma == 1.0
    assert out.loss.item() == pytest.approx(1.680925, abs=1e-6)
    assert out.loss.item() == pytest.approx((math.log1p(math.exp(-1)) + math.log1p(math.exp(3))) / 2, rel=1e-6)
    assert out.chosen_rewards.tolist() == pytest.approx([-4.0, -6.0])
    assert out.rejected_rewards.tolist() == pytest.approx([-6.0, -4.0])
    assert (out.reward_accuracy.item(), out.reward_margin.item()) == (0.5, pytest.approx(0.0))
    other_reference = {**batch, "ref_chosen_logps": torch.zeros(2), "ref_rejected_logps": torch.zeros(2)}
    torch.testing.assert_close(loss(**other_reference).loss, out.loss, rtol=0, atol=0)


def test_nll_term_matches_trl_sft_term_when_chosen_lengths_are_equal():
    logps = _random_logps(batch=8, seed=7, equal_lengths=True)
    ours = NLLRegularised(DPOLoss(0.1), weight=0.7)(**logps)
    trl_loss, _ = _trl_dpo(["sigmoid", "sft"], [1.0, 0.7], 0.1, logps)
    torch.testing.assert_close(ours.loss, trl_loss)


def test_nll_term_normalises_each_chosen_response_by_its_own_length():
    logps = _random_logps(batch=8, seed=9)
    base = DPOLoss(0.1)(**logps)
    ours = NLLRegularised(DPOLoss(0.1), weight=2.0)(**logps)
    nll = (-logps["policy_chosen_logps"] / logps["chosen_lengths"]).mean()
    torch.testing.assert_close(ours.nll, nll)
    torch.testing.assert_close(ours.loss, base.loss + 2.0 * nll)
    torch.testing.assert_close(ours.chosen_rewards, base.chosen_rewards)


def test_hand_worked_dpo_number():
    def one(value: float) -> torch.Tensor:
        return torch.tensor([value])

    out = DPOLoss(beta=0.1)(one(-10.0), one(-12.0), one(-11.0), one(-11.0), one(5), one(5))
    # logits = 0.1 * ((-10 + 11) - (-12 + 11)) = 0.2; loss = -log sigmoid(0.2) = log(1 + e^-0.2)
    assert out.loss.item() == pytest.approx(0.598139, abs=1e-6)
    assert out.loss.item() == pytest.approx(math.log1p(math.exp(-0.2)), rel=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.1)
    assert out.rejected_rewards.item() == pytest.approx(-0.1)
    assert out.reward_accuracy.item() == 1.0
    assert out.reward_margin.item() == pytest.approx(0.2)


@pytest.mark.parametrize(
    "loss",
    [
        DPOLoss(0.1),
        DPOLoss(0.1, 0.2),
        IPOLoss(0.1),
        RDPOLoss(0.1, 0.01),
        SimPOLoss(2.0, 0.5),
        NLLRegularised(DPOLoss(0.1), 1.0),
        NLLRegularised(SimPOLoss(2.0, 0.5), 1.0),
    ],
)
def test_only_policy_logps_receive_gradient(loss):
    logps = {key: value.clone().requires_grad_(value.is_floating_point()) for key, value in _random_logps(4, 1).items()}
    out = loss(**logps)
    out.loss.backward()
    for key in ("policy_chosen_logps", "policy_rejected_logps"):
        assert logps[key].grad is not None and logps[key].grad.abs().sum() > 0
    for key in ("ref_chosen_logps", "ref_rejected_logps"):
        assert logps[key].grad is None
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad


def test_reward_helpers_and_frozen_output():
    chosen, rejected = torch.tensor([1.0, 0.0, 2.0, 0.5]), torch.tensor([0.0, 0.0, 3.0, 0.0])
    assert reward_accuracy(chosen, rejected).item() == 0.5  # the tie counts as wrong
    assert reward_margin(chosen, rejected).item() == pytest.approx(0.125)
    out = PreferenceLossOutput(torch.tensor(0.0), chosen, rejected)
    with pytest.raises(AttributeError):
        out.loss = torch.tensor(1.0)  # type: ignore[misc]


def test_nll_term_is_added_only_with_a_positive_weight():
    base = IPOLoss(0.1)
    assert with_nll_term(base, 0.0) is base
    wrapped = with_nll_term(base, 0.5)
    assert isinstance(wrapped, NLLRegularised) and wrapped.base_loss is base and wrapped.weight == 0.5


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: DPOLoss(0.1, label_smoothing=0.5), r"\[0, 0.5\)"),
        (lambda: DPOLoss(0.0), "beta must be > 0"),
        (lambda: IPOLoss(-1.0), "beta must be > 0"),
        (lambda: with_nll_term(DPOLoss(0.1), -1.0), "nll_weight"),
        (lambda: RDPOLoss(0.1, alpha=-0.01), "alpha must be a number >= 0, got -0.01"),
        (lambda: RDPOLoss(0.1, alpha=math.inf), "alpha must be a number >= 0"),
        (lambda: RDPOLoss(0.1, alpha="0.01"), "alpha must be a number >= 0, got '0.01'"),
        (lambda: RDPOLoss(0.0, alpha=0.01), "beta must be > 0"),
        (lambda: SimPOLoss(0.0, 0.5), "beta must be > 0, got 0.0; SimPO uses 2.0 to 2.5"),
        (lambda: SimPOLoss(True, 0.5), "beta must be > 0, got True"),
        (lambda: SimPOLoss(2.0, -0.5), "gamma_beta_ratio must be a number >= 0"),
    ],
)
def test_losses_reject_bad_values(build, message):
    with pytest.raises(ValueError, match=message):
        build()
