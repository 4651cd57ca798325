"""Reference and policy log-probs share the trainer's precision, so DPO's implicit rewards start at zero.

Before the first update the policy is M_t, the reference: every log-ratio log pi_theta(y|x) - log pi_ref(y|x) must
be 0 up to float noise (Rafailov et al. 2023, Eq. 7). The DPO step runs inside Lightning's precision context
(autocast under `bf16-mixed`, which also works on CPU); the reference must be computed inside the same one.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import default_engine_settings, quiet_cpu_trainer

from metareward.core.losses import DPOLoss
from metareward.engine.iteration import IterationData
from metareward.engine.prompt_pool import PromptPool
from metareward.engine.settings import EngineSettings
from metareward.generation.sampler import RoleSettings, SamplingSettings
from metareward.generation.spec import GenerationSpec
from metareward.lightning import datamodule as datamodule_module
from metareward.lightning.datamodule import SelfJudgedDataModule
from metareward.lightning.dpo_module import DPOModule
from metareward.lightning.handoff import RunContext
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.tiny import build_tiny_model, build_tiny_tokenizer
from metareward.storage.records import PairRecord
from metareward.training.collate import PairCollator
from metareward.training.optim import ConstantSchedule, OptimSettings

PAIRS = [
    PairRecord(
        "actor", f"a{i}", f"Question {i}: explain " + "why " * i, "Because it is so. " * (i + 1), "No " * (4 - i)
    )
    for i in range(4)
] + [
    PairRecord("judge", f"j{i}", f"Judge answer {i}: " + "fine " * i, "Score: 4. Clear." * (i + 1), "Score: 1")
    for i in range(4)
]


def engine_settings() -> EngineSettings:
    role = RoleSettings(SamplingSettings(temperature=1.0, top_p=1.0, max_new_tokens=8), batch_size=2)
    return default_engine_settings(
        seed=0,
        prompts_per_iteration=1,
        num_responses=2,
        num_judgments=1,
        actor=role,
        judge=role,
        meta_judge=role,
        progress=False,
    )


def first_step_logratios(
    precision: str, weights: torch.dtype, run_dir: Path, monkeypatch: pytest.MonkeyPatch, compute: str = "weights"
) -> dict[str, torch.Tensor]:
    """One iteration on fixed pairs (the data engine is stubbed out): the policy-minus-reference log-ratios of
    the chosen and rejected rows of the first batch of each kind, i.e. before that kind's adapter first moves."""
    monkeypatch.setattr(
        datamodule_module, "make_iteration_data", lambda *args, **kwargs: IterationData(1, list(PAIRS), {})
    )
    tokenizer = build_tiny_tokenizer()
    base = build_tiny_model(tokenizer, seed=0, hidden_size=128).to(weights)  # PEFT keeps the adapters in float32
    adapters = RoleAdapters(base, AdapterSpec(r=4, alpha=8, compute_dtype=compute))
    loss = DPOLoss(beta=1.0)  # beta 1: the implicit rewards are the log-ratios themselves
    optim = OptimSettings(partial(torch.optim.AdamW, lr=1e-2), ConstantSchedule(0), reset_each_iteration=True)
    module = DPOModule(adapters, loss, optim)
    seen: list[torch.Tensor] = []
    loss.register_forward_hook(lambda _, __, out: seen.append(torch.cat([out.chosen_rewards, out.rejected_rewards])))
    kinds: list[str] = []

    class Kinds(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            kinds.append(batch["kind"])

    # Each kind's 4 pairs form one batch both for the reference (chunks of 8) and for training, so the rows are
    # padded alike: bf16 rounding then depends only on the precision context, not on how the pairs were batched.
    settings = engine_settings()
    context = RunContext.for_run(run_dir, GenerationSpec(), settings)
    context.attach_model(adapters, tokenizer)
    data = SelfJudgedDataModule(
        context,
        settings,
        PromptPool((), "stub"),
        PairCollator(tokenizer),
        batch_size=4,
        epochs_per_iteration=2,
    )
    trainer = quiet_cpu_trainer(precision=precision, callbacks=[Kinds()])
    trainer.fit(module, datamodule=data)
    assert len(seen) == len(kinds) == 4 and set(kinds) == {"actor", "judge"}
    assert any(float(r.abs().max()) > 1e-3 for r in seen[1:]), "training never moved the policy"
    return {kind: seen[kinds.index(kind)] for kind in ("actor", "judge")}


@pytest.mark.parametrize(
    ("precision", "weights", "compute"),
    [
        ("32-true", torch.float32, "weights"),
        ("bf16-mixed", torch.float32, "weights"),
        ("32-true", torch.bfloat16, "weights"),  # model.dtype=auto on a CPU or GPU with native bfloat16
        ("32-true", torch.bfloat16, "float32"),  # the adapters in float32, as PEFT computes them by itself
        ("bf16-mixed", torch.bfloat16, "weights"),
    ],
)
def test_implicit_rewards_are_zero_before_the_first_update(precision, weights, compute, tmp_path, monkeypatch) -> None:
    for kind, logratios in first_step_logratios(precision, weights, tmp_path, monkeypatch, compute).items():
        assert logratios.abs().max() < 1e-4, f"{kind}: {logratios.tolist()}"
