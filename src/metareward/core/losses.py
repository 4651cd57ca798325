"""Preference losses for iterative DPO, one small `nn.Module` per variant (pure PyTorch).

Contract shared by every loss here. Inputs, all `[B]` tensors of the same dtype and device:
- `policy_chosen_logps`, `policy_rejected_logps`: log pi_theta(y|x) of the chosen / rejected completion, SUMMED
  over its tokens (see `metareward.model.logprobs.completion_logprobs`); these carry the gradient;
- `ref_chosen_logps`, `ref_rejected_logps`: the same under the frozen reference pi_ref (M_t);
- `chosen_lengths`, `rejected_lengths`: the number of completion tokens each sum ran over;
- `labels` (optional, `[B]` in [0, 1]): each pair's soft preference label q, the probability that the chosen answer
  is the better one. A pair with label q is trained on q * L(y_w, y_l) + (1 - q) * L(y_l, y_w), a mixture of the
  pair's loss and the reversed pair's (as CREAM trains, Wang et al. 2024, arXiv 2410.12735; for DPO it is the
  conservative-DPO form with a per-pair flip probability 1 - q). None, or q = 1, is a hard pair.
Output: a `PreferenceLossOutput` with the scalar loss (mean over the batch) and each loss's implicit rewards,
detached, for logging: r = beta * (log pi_theta(y|x) - log pi_ref(y|x)) for every loss but SimPO, whose reward is
reference-free (beta times the mean token log-prob).

The reference inputs are detached inside the losses, so a caller may pass tensors that still track gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from metareward.schema.rules import Number

# The ranges of the values the losses take, stated once: the config's `dpo` group checks its values by these too.
BETA = Number(float, 0, low_open=True)
# Smoothing 0.5 makes the conservative DPO loss ignore which answer was chosen (Mitchell 2023, cDPO).
LABEL_SMOOTHING = Number(float, 0, 0.5, high_open=True)
NLL_WEIGHT = Number(float, 0)


@dataclass(frozen=True)
class PreferenceLossOutput:
    """What a preference loss returns.

    loss: scalar to back-propagate. chosen_rewards / rejected_rewards: `[B]`, the loss's implicit reward of each
    answer, detached (beta * policy-vs-reference log-ratio of the summed log-probs; SimPO: beta * mean token log-prob).
    nll: the chosen-response NLL term when one was added, else None.
    """

    loss: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor
    nll: Tensor | None = None

    @property
    def reward_accuracy(self) -> Tensor:
        return reward_accuracy(self.chosen_rewards, self.rejected_rewards)

    @property
    def reward_margin(self) -> Tensor:
        return reward_margin(self.chosen_rewards, self.rejected_rewards)


def reward_accuracy(chosen_rewards: Tensor, rejected_rewards: Tensor) -> Tensor:
    """Share of pairs whose chosen reward is strictly above the rejected one (ties count as wrong)."""
    return (chosen_rewards > rejected_rewards).float().mean()


def reward_margin(chosen_rewards: Tensor, rejected_rewards: Tensor) -> Tensor:
    """Mean of chosen_reward - rejected_reward over the batch."""
    return (chosen_rewards - rejected_rewards).mean()


class PreferenceLoss(nn.Module):
    """Base class: holds beta, computes the log-ratios and rewards; subclasses define `pair_losses`.

    A new loss is one subclass plus one YAML file in `conf/dpo/loss/` naming it with `_target_` (docs/extending.md, "Adding a
    loss, an optimizer or a schedule").
    """

    beta_hint = "the paper uses 0.1"  # what the message for a bad beta suggests (the DPO paper here)

    def __init__(self, beta: float) -> None:
        super().__init__()
        if not BETA.holds(beta):
            raise ValueError(f"beta must be {BETA.describe()}, got {beta!r}; {self.beta_hint}.")
        self.beta = float(beta)

    def pair_losses(
        self, chosen_logratios: Tensor, rejected_logratios: Tensor, chosen_lengths: Tensor, rejected_lengths: Tensor
    ) -> Tensor:
        """Per-pair loss `[B]` from the policy-minus-reference log-ratios of the summed log-probs."""
        raise NotImplementedError

    def forward(
        self,
        policy_chosen_logps: Tensor,
        policy_rejected_logps: Tensor,
        ref_chosen_logps: Tensor,
        ref_rejected_logps: Tensor,
        chosen_lengths: Tensor,
        rejected_lengths: Tensor,
        labels: Tensor | None = None,
    ) -> PreferenceLossOutput:
        chosen_logratios = policy_chosen_logps - ref_chosen_logps.detach()
        rejected_logratios = policy_rejected_logps - ref_rejected_logps.detach()
        losses = self.pair_losses(chosen_logratios, rejected_logratios, chosen_lengths, rejected_lengths)
        if labels is not None:
            reversed_losses = self.pair_losses(rejected_logratios, chosen_logratios, rejected_lengths, chosen_lengths)
            losses = soft_labelled(losses, reversed_losses, labels)
        return PreferenceLossOutput(
            loss=losses.mean(),
            chosen_rewards=self.beta * chosen_logratios.detach(),
            rejected_rewards=self.beta * rejected_logratios.detach(),
        )

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


class DPOLoss(PreferenceLoss):
    """Direct Preference Optimization, sigmoid form (Rafailov et al. 2023, arXiv 2305.18290, Eq. 7).

    With h = (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)):
        loss = -(1 - eps) * log sigmoid(beta * h) - eps * log sigmoid(-beta * h)
    eps = label_smoothing is the conservative DPO (cDPO) assumption that each preference label is flipped with
    probability eps (Mitchell 2023, "A note on DPO with noisy preferences"); eps = 0 is plain DPO. The losses are
    computed with `logsigmoid`, which is stable for large |h|.
    """

    def __init__(self, beta: float, label_smoothing: float = 0.0) -> None:
        super().__init__(beta)
        if not LABEL_SMOOTHING.holds(label_smoothing):
            raise ValueError(
                f"label_smoothing must lie {LABEL_SMOOTHING.describe()}, got {label_smoothing}; use 0 for plain DPO."
            )
        self.label_smoothing = float(label_smoothing)

    def logits(
        self, chosen_logratios: Tensor, rejected_logratios: Tensor, chosen_lengths: Tensor, rejected_lengths: Tensor
    ) -> Tensor:
        """The Bradley-Terry logit beta * h of each pair, `[B]`."""
        return self.beta * (chosen_logratios - rejected_logratios)

    def pair_losses(
        self, chosen_logratios: Tensor, rejected_logratios: Tensor, chosen_lengths: Tensor, rejected_lengths: Tensor
    ) -> Tensor:
        logits = self.logits(chosen_logratios, rejected_logratios, chosen_lengths, rejected_lengths)
        eps = self.label_smoothing
        return -(1.0 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, label_smoothing={self.label_smoothing}"


class RDPOLoss(DPOLoss):
    """Length-regularised DPO, R-DPO (Park et al. 2024, arXiv 2403.19159, the R-DPO objective).

    With h the DPO log-ratio margin and |y| the completion length in tokens:
        logit = beta * h + alpha * (|y_w| - |y_l|),    loss = -log sigmoid(logit)
    (with label_smoothing eps > 0, the conservative-DPO form of `DPOLoss` on this logit). The sign is the paper's:
    RLHF with the length-penalised reward r(x, y) - alpha * |y| has the optimal policy
    pi ~ pi_ref * exp((r - alpha * |y|) / beta), so r = beta * log(pi / pi_ref) + alpha * |y| + const, and the
    Bradley-Terry likelihood of the data in r gains + alpha * (|y_w| - |y_l|). A longer chosen answer thus raises the
    logit: the preference that length explains is not credited to the policy, whose implicit reward
    beta * log(pi / pi_ref) is the length-penalised one. A shorter chosen answer lowers the logit, so such pairs push
    harder. alpha = 0 is DPO exactly; alpha is in logit units per token of length difference (0.01: a 10-token
    difference moves the logit as far as one nat of log-ratio margin at beta = 0.1). The rewards are DPO's.
    """

    def __init__(self, beta: float, alpha: float, label_smoothing: float = 0.0) -> None:
        super().__init__(beta, label_smoothing)
        if not (_is_number(alpha) and math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"alpha must be a number >= 0, got {alpha!r}; 0 turns the length term off (plain DPO).")
        self.alpha = float(alpha)

    def logits(
        self, chosen_logratios: Tensor, rejected_logratios: Tensor, chosen_lengths: Tensor, rejected_lengths: Tensor
    ) -> Tensor:
        length_gap = (chosen_lengths - rejected_lengths).to(chosen_logratios.dtype)
        return self.beta * (chosen_logratios - rejected_logratios) + self.alpha * length_gap

    def extra_repr(self) -> str:
        return f"beta={self.beta}, alpha={self.alpha}, label_smoothing={self.label_smoothing}"


class IPOLoss(PreferenceLoss):
    """Identity Preference Optimization (Azar et al. 2023, arXiv 2310.12036, Eq. 17), length-normalised.

    With per-token log-ratios h_w = (log pi(y_w|x) - log pi_ref(y_w|x)) / |y_w| and likewise h_l:
        loss = (h_w - h_l - 1 / (2 * beta)) ** 2
    beta is the paper's regulariser tau. The paper writes sequence log-probs; dividing each log-ratio by its own
    completion length (at least 1) follows TRL's DPOTrainer, whose authors report confirming with the IPO authors
    that the paper's results use this form. Without it the squared term grows with response length and beta's scale
    would depend on it. The rewards stay on the summed log-ratios, as for DPO.
    """

    def pair_losses(
        self, chosen_logratios: Tensor, rejected_logratios: Tensor, chosen_lengths: Tensor, rejected_lengths: Tensor
    ) -> Tensor:
        chosen_per_token = chosen_logratios / chosen_lengths.clamp(min=1).to(chosen_logratios.dtype)
        rejected_per_token = rejected_logratios / rejected_lengths.clamp(min=1).to(rejected_logratios.dtype)
        return (chosen_per_token - rejected_per_token - 1.0 / (2.0 * self.beta)) ** 2


class SimPOLoss(PreferenceLoss):
    """SimPO, reference-free and length-normalised (Meng et al. 2024, arXiv 2405.14734, the SimPO objective).

    With the mean token log-prob of each answer, p(y) = log pi_theta(y|x) / |y| (|y| at least 1):
        logit = beta * (p(y_w) - p(y_l)) - gamma,    gamma = beta * gamma_beta_ratio,    loss = -log sigmoid(logit)
    The reward of an answer is beta * p(y); gamma is the target reward margin. The margin is given as the ratio
    gamma / beta, as the authors' released configs do, since it needs less retuning when beta changes (their repo
    recommends 0.5 as a start and a search over [0, 1]). beta is SimPO's own, not `dpo.beta`: the reward is a mean
    log-prob, not a log-ratio, so it needs a larger scale (the paper uses 2.0 to 2.5).

    The reference log-probs are not used: the loop computes them anyway (with the iteration's data), and they are
    accepted and ignored, so this loss is a drop-in for the others. `forward` is overridden, so `pair_losses` (the
    log-ratio hook of the other losses) is not used.
    """

    beta_hint = "SimPO uses 2.0 to 2.5"

    def __init__(self, beta: float, gamma_beta_ratio: float) -> None:
        super().__init__(beta)
        if not (_is_number(gamma_beta_ratio) and math.isfinite(gamma_beta_ratio) and gamma_beta_ratio >= 0):
            raise ValueError(
                f"gamma_beta_ratio must be a number >= 0, got {gamma_beta_ratio!r}; SimPO suggests 0.5 (range 0 to 1)."
            )
        self.gamma_beta_ratio = float(gamma_beta_ratio)

    @property
    def gamma(self) -> float:
        """The paper's target reward margin."""
        return self.beta * self.gamma_beta_ratio

    def forward(
        self,
        policy_chosen_logps: Tensor,
        policy_rejected_logps: Tensor,
        ref_chosen_logps: Tensor,
        ref_rejected_logps: Tensor,
        chosen_lengths: Tensor,
        rejected_lengths: Tensor,
        labels: Tensor | None = None,
    ) -> PreferenceLossOutput:
        chosen = self.beta * policy_chosen_logps / chosen_lengths.clamp(min=1).to(policy_chosen_logps.dtype)
        rejected = self.beta * policy_rejected_logps / rejected_lengths.clamp(min=1).to(policy_rejected_logps.dtype)
        losses = -F.logsigmoid(chosen - rejected - self.gamma)
        if labels is not None:  # the reversed pair keeps the margin: -log sigmoid(beta * (p_l - p_w) - gamma)
            losses = soft_labelled(losses, -F.logsigmoid(rejected - chosen - self.gamma), labels)
        return PreferenceLossOutput(
            loss=losses.mean(), chosen_rewards=chosen.detach(), rejected_rewards=rejected.detach()
        )

    def extra_repr(self) -> str:
        return f"beta={self.beta}, gamma_beta_ratio={self.gamma_beta_ratio}"


def soft_labelled(losses: Tensor, reversed_losses: Tensor, labels: Tensor) -> Tensor:
    """q * L(y_w, y_l) + (1 - q) * L(y_l, y_w) per pair, q = `labels` (see the module's contract)."""
    labels = labels.to(losses.dtype)
    return labels * losses + (1.0 - labels) * reversed_losses


def _is_number(value: Any) -> bool:
    """An int or float, not a bool (a YAML `true` is no beta), so that a bad value is refused by name."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class NLLRegularised(nn.Module):
    """A preference loss plus a negative log-likelihood term on the chosen responses.

    Iterative RPO (Pang et al. 2024, arXiv 2404.19733, Eq. 1-2): loss = L_pref + weight * L_NLL with
        L_NLL = mean over pairs of ( -log pi(y_w|x) / |y_w| ),
    each chosen response normalised by its own length as in the paper, then averaged over the batch. (TRL's "sft"
    term instead pools every chosen token of the batch; the two agree when the chosen lengths are equal.)
    """

    def __init__(self, base_loss: PreferenceLoss, weight: float) -> None:
        super().__init__()
        if not NLL_WEIGHT.holds(weight):
            raise ValueError(f"the NLL weight must be {NLL_WEIGHT.describe()}, got {weight}; the RPO paper uses 1.0.")
        self.base_loss = base_loss
        self.weight = float(weight)

    def forward(
        self,
        policy_chosen_logps: Tensor,
        policy_rejected_logps: Tensor,
        ref_chosen_logps: Tensor,
        ref_rejected_logps: Tensor,
        chosen_lengths: Tensor,
        rejected_lengths: Tensor,
        labels: Tensor | None = None,
    ) -> PreferenceLossOutput:
        base = self.base_loss(
            policy_chosen_logps,
            policy_rejected_logps,
            ref_chosen_logps,
            ref_rejected_logps,
            chosen_lengths,
            rejected_lengths,
            labels,
        )
        nll = (-policy_chosen_logps / chosen_lengths.clamp(min=1).to(policy_chosen_logps.dtype)).mean()
        return PreferenceLossOutput(
            loss=base.loss + self.weight * nll,
            chosen_rewards=base.chosen_rewards,
            rejected_rewards=base.rejected_rewards,
            nll=nll.detach(),
        )

    def extra_repr(self) -> str:
        return f"weight={self.weight}"


def with_nll_term(loss: PreferenceLoss, nll_weight: float) -> PreferenceLoss | NLLRegularised:
    """`loss` plus the chosen-response NLL term of iterative RPO when `nll_weight > 0`, else `loss` itself."""
    if not NLL_WEIGHT.holds(nll_weight):
        raise ValueError(
            f"nll_weight must be {NLL_WEIGHT.describe()}, got {nll_weight}; use 0 to turn the NLL term off."
        )
    return NLLRegularised(loss, nll_weight) if nll_weight > 0 else loss
