"""M0 is the model the loop starts from: the base model with its adapters off, or after a warm start the warm-started
weights, frozen there (`freeze_seed`) while training moves on; the seed roles answer (SEED_ROLE, the actor's
weights) and judge (SEED_JUDGE_ROLE, the judge's) as M0; saved M0 weights load back exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from metareward.generation.policy import Policy
from metareward.model.adapters import AdapterSpec, RoleAdapters, SavedAdapterError
from metareward.model.full_weights import FullWeights
from metareward.model.roles import SEED_JUDGE_ROLE, SEED_ROLE
from metareward.model.tiny import build_tiny

CONTEXTS = ["a b c Score: ", "d e Score: ", "f g h i Score: "]
CHOICES = ("1", "2", "3", "4", "5")


def moved(adapters: RoleAdapters | FullWeights, adapter: str | None, seed: int) -> None:
    """A training stand-in: an adapter's LoRA B matrices (None: every weight of a full model) take random values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in adapters.model.named_parameters():
            if adapter is None or ("lora_B" in name and f".{adapter}." in name):
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.3)


def reads(policy: Policy, role: str) -> np.ndarray:
    return policy.choose(role, CONTEXTS, CHOICES, batch_size=4, desc="test")


def test_without_a_warm_start_m0_is_the_base_model_with_adapters_off() -> None:
    model, tokenizer = build_tiny()
    base = Policy(FullWeights(build_tiny()[0]), tokenizer, progress=False)
    adapters = RoleAdapters(model, AdapterSpec())
    moved(adapters, "actor", 1)
    moved(adapters, "judge", 2)
    policy = Policy(adapters, tokenizer, progress=False)
    for role in (SEED_ROLE, SEED_JUDGE_ROLE):
        np.testing.assert_allclose(reads(policy, role), reads(base, "actor"), atol=1e-6)


def test_after_freeze_seed_the_seed_roles_keep_the_warm_started_actor_and_judge() -> None:
    model, tokenizer = build_tiny()
    adapters = RoleAdapters(model, AdapterSpec())
    policy = Policy(adapters, tokenizer, progress=False)
    moved(adapters, "actor", 1)  # the warm start trains both adapters
    moved(adapters, "judge", 2)
    warm = {role: reads(policy, role) for role in ("actor", "judge")}
    assert not np.allclose(warm["actor"], warm["judge"], atol=1e-3)
    adapters.freeze_seed()
    moved(adapters, "actor", 3)  # DPO moves them on
    moved(adapters, "judge", 4)
    trained = adapters.role_tensors("actor") | adapters.role_tensors("judge")
    np.testing.assert_allclose(reads(policy, SEED_ROLE), warm["actor"], atol=1e-6)
    np.testing.assert_allclose(reads(policy, SEED_JUDGE_ROLE), warm["judge"], atol=1e-6)
    assert not np.allclose(reads(policy, "judge"), warm["judge"], atol=1e-3)
    after = adapters.role_tensors("actor") | adapters.role_tensors("judge")
    assert all(torch.equal(trained[name], after[name]) for name in trained)  # lent, then given back
    assert adapters.model.active_adapter == "actor"


def test_shared_adapter_and_full_weights_keep_one_m0_for_both_seed_roles() -> None:
    model, tokenizer = build_tiny()
    shared = RoleAdapters(model, AdapterSpec(mode="shared"))
    moved(shared, "policy", 1)
    policy = Policy(shared, tokenizer, progress=False)
    warm = reads(policy, "actor")
    shared.freeze_seed()
    moved(shared, "policy", 2)
    for role in (SEED_ROLE, SEED_JUDGE_ROLE):
        np.testing.assert_allclose(reads(policy, role), warm, atol=1e-6)

    full = FullWeights(build_tiny()[0])
    moved(full, None, 1)
    policy = Policy(full, tokenizer, progress=False)
    warm = reads(policy, "actor")
    assert not np.allclose(reads(policy, SEED_ROLE), warm, atol=1e-3)  # before freeze_seed: the base model
    full.freeze_seed()
    moved(full, None, 2)
    for role in (SEED_ROLE, SEED_JUDGE_ROLE):
        np.testing.assert_allclose(reads(policy, role), warm, atol=1e-6)
    assert full.weight_record()["distance_from_seed"] > 0  # measured from the warm-started M0


def test_saved_weights_load_back_and_foreign_ones_are_refused(tmp_path: Path) -> None:
    model, tokenizer = build_tiny()
    adapters = RoleAdapters(model, AdapterSpec())
    moved(adapters, "actor", 1)
    moved(adapters, "judge", 2)
    named = adapters.model.named_parameters()
    adapters.save(tmp_path / "lora", {n: p.detach() for n, p in named if adapters.is_trained(n)})
    fresh = RoleAdapters(build_tiny()[0], AdapterSpec())
    fresh.load(tmp_path / "lora")
    for role in ("actor", "judge"):
        mine, theirs = adapters.role_tensors(role), fresh.role_tensors(role)
        assert all(torch.equal(mine[name], theirs[name]) for name in mine)
    with pytest.raises(SavedAdapterError, match="does not fit the model.adapters settings"):
        RoleAdapters(build_tiny()[0], AdapterSpec(r=4)).load(tmp_path / "lora")

    full = FullWeights(build_tiny()[0])
    moved(full, None, 1)
    full.save(tmp_path / "full", {n: p.detach() for n, p in full.model.named_parameters()}, tokenizer)
    loaded = FullWeights(build_tiny(seed=5)[0])
    loaded.load(tmp_path / "full")
    pairs = zip(full.model.state_dict().items(), loaded.model.state_dict().items(), strict=True)
    assert all(a == c and torch.equal(b, d) for (a, b), (c, d) in pairs)
    (tmp_path / "full" / "policy" / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(SavedAdapterError, match="does not read back"):
        loaded.load(tmp_path / "full")
