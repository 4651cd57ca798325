"""DPO over what trains (`model.finetune`): LoRA adapters (actor pairs train the actor adapter, judge pairs the judge
adapter) or every weight of the one model all roles share.

The reference log-probs come with the batch (computed by M_t when the iteration's data was made), so no second
copy of the model is held. Only the trained parameters are optimised and checkpointed.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from metareward.lightning.strategies import fsdp_root
from metareward.model.adapters import PAIR_KIND_ROLE, RoleAdapters
from metareward.model.full_weights import FullWeights
from metareward.model.logprobs import pair_logprobs
from metareward.training.optim import OptimSettings, apply_schedule


class DPOModule(L.LightningModule):
    def __init__(self, adapters: RoleAdapters | FullWeights, loss: torch.nn.Module, optim: OptimSettings) -> None:
        super().__init__()
        self.adapters = adapters
        self.model = adapters.model
        self.loss = loss
        self.optim = optim
        self.iteration_step = 0
        self.iteration_steps = 1
        # name -> [pair-weighted sum, pairs] over the current epoch-iteration
        self.epoch_metrics: dict[str, list[float]] = {}
        # With LoRA, checkpoints hold the adapters only, so the base weights are always absent from them: strategies
        # that load the weights themselves (FSDP, DeepSpeed) must not ask for every key. load_state_dict checks the
        # trained tensors.
        self.strict_loading = False

    def on_train_epoch_start(self) -> None:
        self.iteration_step = 0
        self.iteration_steps = max(self.trainer.num_training_batches // self.trainer.accumulate_grad_batches, 1)
        self.epoch_metrics = {}
        if self.optim.reset_each_iteration:
            for optimizer in self.trainer.optimizers:
                optimizer.state.clear()

    def on_train_batch_start(self, batch: dict[str, Any], batch_idx: int) -> None:
        for optimizer in self.trainer.optimizers:
            apply_schedule(optimizer, self.optim.lr_schedule, self.iteration_step, self.iteration_steps)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.iteration_step += 1

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if not batch.get("pairs"):
            return None  # an iteration without pairs: nothing to learn, the loop goes on
        kind = batch["kind"]
        self.adapters.activate(PAIR_KIND_ROLE[kind])
        with self.adapters.compute_context():
            logps, counts = pair_logprobs(
                self.model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
            )
        policy_chosen, policy_rejected = logps.chunk(2)
        ref_chosen, ref_rejected = batch["ref_logps"].to(logps.dtype).chunk(2)
        chosen_lengths, rejected_lengths = counts.chunk(2)
        labels = batch.get("pair_labels")
        labels = labels.to(logps.dtype) if labels is not None else None
        out = self.loss(
            policy_chosen, policy_rejected, ref_chosen, ref_rejected, chosen_lengths, rejected_lengths, labels
        )
        size = len(policy_chosen)
        metrics = {
            "train/loss": out.loss.detach(),
            "train/reward_accuracy": out.reward_accuracy.float(),
            "train/reward_margin": out.reward_margin.float(),
            f"train/{kind}_loss": out.loss.detach(),
            "train/chosen_reward": out.chosen_rewards.mean(),
            "train/rejected_reward": out.rejected_rewards.mean(),
        }
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=size)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, batch_size=size)
        for name, value in metrics.items():
            total = self.epoch_metrics.setdefault(name, [0.0, 0.0])
            total[0] += float(value) * size
            total[1] += size
        return out.loss

    def iteration_means(self) -> dict[str, float]:
        """Pair-weighted means of this epoch-iteration's training metrics."""
        return {name: weighted / count for name, (weighted, count) in self.epoch_metrics.items() if count}

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Only what trains: with LoRA the base weights never change, so checkpoints stay small (MBs, not GBs)."""
        return {k: v for k, v in super().state_dict(*args, **kwargs).items() if self.adapters.is_trained(k)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Only what trains here too: FSDP gathers the wrapped module's whole state dict, not this one's."""
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if self.adapters.is_trained(k)}

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Loads the trained tensors of a checkpoint, all of which must be there (`strict` is about LoRA's base
        weights, which a checkpoint never holds)."""
        missing = [k for k in super().state_dict() if self.adapters.is_trained(k) and k not in state_dict]
        if missing:
            raise KeyError(f"checkpoint lacks {len(missing)} trained tensors, e.g. {missing[0]}")
        return super().load_state_dict(state_dict, strict=False, assign=assign)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Under FSDP the norm is clipped by the root module, over every rank's shard (Lightning's own clipping
        refuses FSDP); elsewhere as Lightning does."""
        root = fsdp_root(self.trainer)
        if root is not None and gradient_clip_val and gradient_clip_algorithm in (None, "norm"):
            root.clip_grad_norm_(gradient_clip_val)
        else:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """The configured optimizer (`dpo.optimizer`) over the trained parameters only."""
        return self.optim.optimizer(self.adapters.trained_parameters())
