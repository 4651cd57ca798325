"""Preference losses for iterative DPO, one small `nn.Module` per variant (pure PyTorch).

Contract shared by every loss here. Inputs, all `[B]` tensors of the same dtype and device:
- `policy_chosen_logps`, `policy_rejected_logps`: log pi_theta(y|x) of the chosen / rejected completion, SUMMED
  over its tokens (see `metareward.core.logprobs.completion_logprobs`); these carry the gradient;
- `ref_chosen_logps`, `ref_rejected_logps`: the same under the frozen reference pi_ref (M_t);
- `chosen_lengths`, `rejected_lengths`: the number of completion tokens each sum ran over.
Output: a `PreferenceLossOutput` with the scalar loss (mean over the batch) and the implicit rewards
r = beta * (log pi_theta(y|x) - log pi_ref(y|x)), detached, for logging.

The reference inputs are detached inside the losses, so a caller may pass tensors that still track gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class PreferenceLossOutput:
    """What a preference loss returns.

    loss: scalar to back-propagate. chosen_rewards / rejected_rewards: `[B]`, beta * policy-vs-reference log-ratio
    of the summed log-probs, detached. nll: the chosen-response NLL term when one was added, else None.
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

    A new loss is one subclass plus one YAML file in `conf/dpo/loss/` naming it with `_target_` (README, "Adding a
    loss, an optimizer or a schedule").
    """

    def __init__(self, beta: float) -> None:
        super().__init__()
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}; the paper uses 0.1.")
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
    ) -> PreferenceLossOutput:
        chosen_logratios = policy_chosen_logps - ref_chosen_logps.detach()
        rejected_logratios = policy_rejected_logps - ref_rejected_logps.detach()
        losses = self.pair_losses(chosen_logratios, rejected_logratios, chosen_lengths, rejected_lengths)
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
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must lie in [0, 0.5), got {label_smoothing}; use 0 for plain DPO.")
        self.label_smoothing = float(label_smoothing)

    def pair_losses(
        self, chosen_logratios: Tensor, rejected_logratios: Tensor, chosen_lengths: Tensor, rejected_lengths: Tensor
    ) -> Tensor:
        logits = self.beta * (chosen_logratios - rejected_logratios)
        eps = self.label_smoothing
        return -(1.0 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, label_smoothing={self.label_smoothing}"


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


class NLLRegularised(nn.Module):
    """A preference loss plus a negative log-likelihood term on the chosen responses.

    Iterative RPO (Pang et al. 2024, arXiv 2404.19733, Eq. 1-2): loss = L_pref + weight * L_NLL with
        L_NLL = mean over pairs of ( -log pi(y_w|x) / |y_w| ),
    each chosen response normalised by its own length as in the paper, then averaged over the batch. (TRL's "sft"
    term instead pools every chosen token of the batch; the two agree when the chosen lengths are equal.)
    """

    def __init__(self, base_loss: PreferenceLoss, weight: float) -> None:
        super().__init__()
        if not weight >= 0:
            raise ValueError(f"the NLL weight must be >= 0, got {weight}; the RPO paper uses 1.0.")
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
    ) -> PreferenceLossOutput:
        base = self.base_loss(
            policy_chosen_logps,
            policy_rejected_logps,
            ref_chosen_logps,
            ref_rejected_logps,
            chosen_lengths,
            rejected_lengths,
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
    if not nll_weight >= 0:
        raise ValueError(f"nll_weight must be >= 0, got {nll_weight}; use 0 to turn the NLL term off.")
    return NLLRegularised(loss, nll_weight) if nll_weight > 0 else loss
