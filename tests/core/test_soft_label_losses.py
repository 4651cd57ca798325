"""Every preference loss with per-pair soft labels: q * L(y_w, y_l) + (1 - q) * L(y_l, y_w), worked by hand for one
batch, and equal to conservative DPO where one label holds for every pair (conservative DPO is checked against TRL
in tests/core/test_losses.py)."""

from __future__ import annotations

import math

import pytest
import torch

from metareward.core.losses import DPOLoss, IPOLoss, NLLRegularised, RDPOLoss, SimPOLoss


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def _batch() -> dict[str, torch.Tensor]:
    # Pair 0: chosen log-ratio 2 - 0 = 2, rejected -1 - 2 = -3, so h = 5. Pair 1: h = (-4 + 5) - (-6 + 6) = 1.
    return {
        "policy_chosen_logps": torch.tensor([2.0, -4.0]),
        "policy_rejected_logps": torch.tensor([-1.0, -6.0]),
        "ref_chosen_logps": torch.tensor([0.0, -5.0]),
        "ref_rejected_logps": torch.tensor([2.0, -6.0]),
        "chosen_lengths": torch.tensor([5, 2]),
        "rejected_lengths": torch.tensor([4, 3]),
    }


def test_hand_worked_soft_dpo_batch() -> None:
    # beta 0.1: logits 0.5 and 0.1. Pair 0 has q = 0.8: -0.8 log s(0.5) - 0.2 log s(-0.5). Pair 1 is hard (q = 1).
    expected = (-0.8 * _log_sigmoid(0.5) - 0.2 * _log_sigmoid(-0.5) - _log_sigmoid(0.1)) / 2
    out = DPOLoss(0.1)(**_batch(), labels=torch.tensor([0.8, 1.0]))
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx((0.574077 + 0.644397) / 2, abs=1e-6)


def test_soft_labels_combine_with_label_smoothing() -> None:
    # q = 0.8 with eps = 0.1: the weight on -log s(z) is 0.8 * 0.9 + 0.2 * 0.1 = 0.74.
    out = DPOLoss(0.1, label_smoothing=0.1)(**_batch(), labels=torch.tensor([0.8, 0.8]))
    expected = sum(-0.74 * _log_sigmoid(z) - 0.26 * _log_sigmoid(-z) for z in (0.5, 0.1)) / 2
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("loss", [DPOLoss(0.1), RDPOLoss(0.1, alpha=0.05)])
@pytest.mark.parametrize("q", [0.6, 0.75, 0.95])
def test_one_label_for_every_pair_is_conservative_dpo(loss, q: float) -> None:
    smoothed = type(loss)(**{**_params(loss), "label_smoothing": 1.0 - q})
    torch.testing.assert_close(loss(**_batch(), labels=torch.full((2,), q)).loss, smoothed(**_batch()).loss)


def _params(loss) -> dict[str, float]:
    return {"beta": loss.beta, **({"alpha": loss.alpha} if isinstance(loss, RDPOLoss) else {})}


def test_hand_worked_soft_simpo_keeps_its_margin_in_the_reversed_pair() -> None:
    # beta 2, gamma 1. Pair 0: mean log-probs 2/5 = 0.4 and -1/4 = -0.25, rewards 0.8 and -0.5; forward logit
    # 0.8 + 0.5 - 1 = 0.3, reversed -0.5 - 0.8 - 1 = -2.3. q = 0.75.
    out = SimPOLoss(2.0, gamma_beta_ratio=0.5)(**_batch(), labels=torch.tensor([0.75, 1.0]))
    # Pair 1 is hard: rewards 2 * -4 / 2 = -4 and 2 * -6 / 3 = -4, logit -1.
    expected = (-0.75 * _log_sigmoid(0.3) - 0.25 * _log_sigmoid(-2.3) - _log_sigmoid(-1.0)) / 2
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)


def test_hand_worked_soft_ipo() -> None:
    # beta 0.5, target 1 / (2 * 0.5) = 1. Pair 0: per-token log-ratios 2 / 5 = 0.4 and -3 / 4 = -0.75, gap 1.15;
    # forward (1.15 - 1)^2 = 0.0225, reversed (-1.15 - 1)^2 = 4.6225; q = 0.5 averages them. Pair 1: gap
    # 1 / 2 - 0 / 3 = 0.5, hard: (0.5 - 1)^2 = 0.25.
    out = IPOLoss(0.5)(**_batch(), labels=torch.tensor([0.5, 1.0]))
    assert out.loss.item() == pytest.approx(((0.0225 + 4.6225) / 2 + 0.25) / 2, rel=1e-6)


def test_hard_labels_give_the_unlabelled_loss_and_the_nll_term_passes_labels_on() -> None:
    for loss in (DPOLoss(0.1, 0.2), RDPOLoss(0.1, 0.01), IPOLoss(0.1), SimPOLoss(2.0, 0.5)):
        torch.testing.assert_close(loss(**_batch(), labels=torch.ones(2)).loss, loss(**_batch()).loss)
    regularised = NLLRegularised(DPOLoss(0.1), weight=0.5)
    labelled = regularised(**_batch(), labels=torch.tensor([0.8, 1.0]))
    base = DPOLoss(0.1)(**_batch(), labels=torch.tensor([0.8, 1.0]))
    torch.testing.assert_close(labelled.loss - base.loss, 0.5 * labelled.nll)


def test_a_label_of_one_half_trains_towards_no_preference() -> None:
    # With q = 0.5 the DPO loss is symmetric in the logit, so its gradient at z = 0 vanishes.
    batch = {key: value.clone() for key, value in _batch().items()}
    batch["policy_chosen_logps"] = torch.tensor([-1.0, -5.0], requires_grad=True)  # h = (-1 - 0) - (-1 - 2) = 2
    DPOLoss(0.1)(**batch, labels=torch.tensor([0.5, 0.5])).loss.backward()
    grad = batch["policy_chosen_logps"].grad
    assert grad[0] > 0  # pair 0 has z = 0.2 > 0: q = 0.5 pulls its chosen log-prob down, towards z = 0
    assert grad[1] == pytest.approx(0.0)  # pair 1 has h = (-5 + 5) - (-6 + 6) = 0 already
