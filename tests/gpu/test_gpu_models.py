"""Model options that need CUDA: QLoRA (4-bit base weights) trains only the adapters; flash attention matches sdpa.
Each loads a small random Llama-architecture checkpoint written to a temporary folder. Not yet run on a GPU in this
project."""

from __future__ import annotations

import importlib.util
import math
from functools import partial

import pytest
import torch

from metareward.core.losses import DPOLoss
from metareward.lightning.dpo_module import DPOModule
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.loading import ModelSpec, load_model_and_tokenizer
from metareward.training.optim import ConstantSchedule, OptimSettings

pytestmark = pytest.mark.gpu


def dpo_batch(model: torch.nn.Module, device: torch.device) -> dict:
    """Two pairs (rows 0-1 chosen, 2-3 rejected) of 6 prompt and 4 completion tokens, with reference log-probs
    from the model as it is (M_t)."""
    from metareward.model.logprobs import completion_logprobs

    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(10, 300, (2, 6), generator=generator)
    completions = torch.randint(10, 300, (4, 4), generator=generator)
    input_ids = torch.cat([prompt.repeat(2, 1), completions], dim=1).to(device)
    attention_mask = torch.ones_like(input_ids)
    completion_mask = torch.zeros_like(input_ids)
    completion_mask[:, -4:] = 1
    with torch.no_grad():
        ref, _ = completion_logprobs(model, input_ids, attention_mask, completion_mask)
    return {
        "kind": "actor",
        "pairs": 2,
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "completion_mask": completion_mask,
        "ref_logps": ref.float(),
    }


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs the gpu extra (bitsandbytes)")
def test_qlora_dpo_steps_train_only_the_adapters(random_llama) -> None:
    import bitsandbytes as bnb
    import lightning as L

    spec = ModelSpec(str(random_llama()), dtype="bfloat16", quantization="4bit", gradient_checkpointing=True)
    model, _ = load_model_and_tokenizer(spec)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    adapters = RoleAdapters(model, AdapterSpec(r=8, alpha=16, target_modules=("q_proj", "v_proj", "down_proj")))
    batch = dpo_batch(adapters.model, next(adapters.model.parameters()).device)
    base = {n: p.detach().clone() for n, p in adapters.base_parameters()}
    optim = OptimSettings(partial(torch.optim.AdamW, lr=1e-3), ConstantSchedule(0), reset_each_iteration=True)
    module = DPOModule(adapters, DPOLoss(beta=0.1), optim)
    trainer = L.Trainer(
        accelerator="gpu",
        devices=1,
        precision="bf16-mixed",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader([batch, batch], batch_size=None))
    assert math.isfinite(module.iteration_means()["train/loss"])
    assert all(torch.equal(p, base[n]) for n, p in adapters.base_parameters())  # 4-bit weights untouched
    trained = [p for n, p in adapters.model.named_parameters() if "lora_B.actor" in n]
    assert trained and all(p.abs().sum() > 0 for p in trained)  # B starts at zero: moved by the steps


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is None, reason="needs the gpu extra (flash-attn)")
def test_flash_attention_logits_match_sdpa(random_llama) -> None:
    folder = str(random_llama(hidden_size=512, heads=8))  # head dim 64, as flash-attn expects
    assert ModelSpec(folder, dtype="bfloat16", attn_implementation="auto").attention() == "flash_attention_2"
    ids = torch.randint(10, 300, (2, 48), generator=torch.Generator().manual_seed(1)).cuda()
    logits = {}
    for attention in ("flash_attention_2", "sdpa"):
        model, _ = load_model_and_tokenizer(ModelSpec(folder, dtype="bfloat16", attn_implementation=attention))
        assert model.config._attn_implementation == attention
        with torch.no_grad():
            logits[attention] = model.cuda().eval()(input_ids=ids).logits.float()
    torch.testing.assert_close(logits["flash_attention_2"], logits["sdpa"], atol=3e-2, rtol=3e-2)
