"""Full fine-tuning (`model.finetune=full`): every weight trains and all roles share it; the seed role is a frozen
copy of M0; checkpoints are whole models in Hugging Face format; the config check refuses what cannot work."""

from __future__ import annotations

import pytest
import torch
from helpers import EXPERIMENTS, TRAINERS, compose, config_problems
from transformers import AutoModelForCausalLM

from metareward.config.build import ConfigError, build_settings
from metareward.generation.policy import Policy
from metareward.generation.sampler import GenerationRequest, RoleSettings, SamplingSettings
from metareward.lightning.dpo_module import DPOModule
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.full_weights import FullWeights, role_weights
from metareward.model.roles import SEED_ROLE
from metareward.model.tiny import build_tiny
from metareward.run.resume import adapter_problem
from metareward.training.optim import OptimSettings

GREEDY = RoleSettings(SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=8), batch_size=4)
REQUESTS = [GenerationRequest(i, text, i) for i, text in enumerate(["a b c", "d e", "f g h i"])]


def moved(weights: FullWeights) -> None:
    """A training step stand-in: every weight moves away from M0."""
    with torch.no_grad():
        for parameter in weights.model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)


def texts(policy: Policy, role: str) -> list[str]:
    return [g.text for g in policy.generate(role, REQUESTS, GREEDY, desc="test")]


def test_every_role_plays_the_trained_weights_and_the_seed_role_plays_m0() -> None:
    model, tokenizer = build_tiny()
    fresh, _ = build_tiny()  # the same seed: M0's weights
    weights = role_weights(model, "full", AdapterSpec())
    assert isinstance(weights, FullWeights) and set(weights.adapter_for_role.values()) == {"policy"}
    assert all(p.requires_grad for p in weights.trained_parameters())
    assert len(weights.trained_parameters()) == len(list(model.parameters()))
    assert not any(p.requires_grad for p in weights.seed_model.parameters())
    moved(weights)
    policy = Policy(weights, tokenizer, progress=False)
    m0 = Policy(FullWeights(fresh), tokenizer, progress=False)
    assert texts(policy, SEED_ROLE) == texts(m0, "actor")  # the frozen copy did not move
    assert texts(policy, "actor") == texts(policy, "judge") != texts(policy, SEED_ROLE)
    assert weights.weight_record()["distance_from_seed"] > 0
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), weights.seed_model.parameters(), strict=True))


def test_lent_weights_come_back_and_foreign_ones_are_refused() -> None:
    model, _ = build_tiny()
    weights = FullWeights(model)
    before = weights.role_tensors("judge")
    moved(weights)
    after = weights.role_tensors("judge")
    with weights.role_tensors_lent("judge", before):
        assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert all(torch.equal(p, after[n]) for n, p in model.named_parameters())
    with (
        pytest.raises(ValueError, match="do not match it"),
        weights.role_tensors_lent("judge", {"x": next(iter(before.values()))}),
    ):
        pass


def test_the_dpo_module_optimises_and_checkpoints_every_weight() -> None:
    model, _ = build_tiny()
    weights = FullWeights(model)
    module = DPOModule(weights, torch.nn.Identity(), OptimSettings(lambda p: torch.optim.SGD(p, lr=0.1), None, False))
    optimizer = module.configure_optimizers()
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    assert set(module.state_dict()) == {f"model.{k}" for k in model.state_dict()}
    lora = DPOModule(RoleAdapters(build_tiny()[0], AdapterSpec(r=4, alpha=8)), torch.nn.Identity(), module.optim)
    assert lora.state_dict() and all("lora_" in k for k in lora.state_dict())


def test_a_saved_iteration_is_a_whole_model_that_from_pretrained_loads(tmp_path) -> None:
    model, tokenizer = build_tiny()
    weights = FullWeights(model)
    moved(weights)
    folder = tmp_path / "run" / "checkpoints" / "iter_01"
    weights.save(folder, {n: p.detach() for n, p in model.named_parameters()}, tokenizer)
    loaded = AutoModelForCausalLM.from_pretrained(folder / "policy")
    assert all(torch.equal(p, loaded.state_dict()[n]) for n, p in model.state_dict().items())
    assert (folder / "policy" / "tokenizer.json").is_file() and not list(folder.glob(".*"))
    assert adapter_problem(tmp_path / "run") is None
    weights_file = folder / "policy" / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:1000])
    problem = adapter_problem(tmp_path / "run")
    assert problem is not None and "model.safetensors does not read back" in problem


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model.finetune=everything"], "model.finetune='everything' is not one of ['full', 'lora']"),
        (["model.finetune=full", "model.quantization=4bit"], "model.finetune=full does not combine with"),
        (
            ["model.finetune=full", "generation=vllm", "generation.urls=[http://127.0.0.1:8000]"],
            "model.finetune=full with generation=vllm reloads the trained weights into servers the run starts",
        ),
    ],
)
def test_the_config_check_refuses_what_full_fine_tuning_cannot_do(prompt_file, overrides, expected) -> None:
    cfg = compose("+experiment=smoke", f"data.path={prompt_file}", *overrides)
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        build_settings(cfg)


def test_full_fine_tuning_composes_with_every_experiment_and_trainer(prompt_file) -> None:
    for experiment in EXPERIMENTS:
        problems = config_problems(f"+experiment={experiment}", f"data.path={prompt_file}", "model.finetune=full")
        refused = [p for p in problems if "finetune" in p]
        quantized = compose(f"+experiment={experiment}").model.quantization  # the 70B seed: QLoRA only
        assert len(refused) == (1 if quantized else 0), (experiment, problems)
        assert all(p.startswith("model.finetune=full does not combine with model.quantization") for p in refused)
    for trainer in TRAINERS:  # on this CPU machine the GPU trainers are refused for CUDA, never for full fine-tuning
        problems = config_problems(
            "+experiment=meta_reward", f"data.path={prompt_file}", f"trainer={trainer}", "model.finetune=full"
        )
        assert not [p for p in problems if "finetune" in p], (trainer, problems)


@pytest.mark.parametrize(
    ("override", "stat"),
    [("pairs/rejected=seed", "anchor/responses"), ("pairs/label=consistency", "previous_judge/consistency")],
)
def test_the_methods_that_read_m0_or_the_previous_judge_run_with_full_fine_tuning(
    prompt_file, tmp_path, override: str, stat: str
) -> None:
    import json

    from metareward.run.training import train

    off = ("callbacks.win_rate=null", "callbacks.judge_quality=null", "callbacks.dashboard=null")
    cfg = compose(
        "+experiment=smoke", f"data.path={prompt_file}", "model.finetune=full", override, *off, output_dir=tmp_path
    )
    train(cfg)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "finished"
    second = json.loads((tmp_path / "iterations" / "iter_02" / "stats.json").read_text())
    assert stat in second and second.get("previous_judge/available", 1.0) == 1.0  # anchored: M0 answered beside M2;
    assert second.get("anchor/responses", 1.0) > 0  # CREAM: M1's whole-model judge judged iteration 2 again
