"""Full fine-tuning on the vLLM backend: the server's weights are reloaded in place, so every trained role answers
with the current weights and the seed role with M0's, exactly as the HF backend does; and one iteration of
`train.py` with `model.finetune=full generation=vllm` runs through, with one training process and with two sharing
the server's one set of weights."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import (
    REPO_ROOT,
    VLLM_ONE_REQUEST_AT_A_TIME,
    environment,
    smoke_train_command,
    stage_texts,
    write_prompts,
)

from metareward.generation.backends import build_backend
from metareward.generation.policy import Policy
from metareward.generation.sampler import GenerationRequest, RoleSettings, SamplingSettings
from metareward.generation.spec import GenerationSpec
from metareward.generation.vllm_server import ServerSettings
from metareward.model.chat import render_prompt
from metareward.model.full_weights import FullWeights
from metareward.model.loading import ModelSpec, load_model_and_tokenizer
from metareward.model.roles import SEED_ROLE

VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
EMBEDDED = "builtin:smollm2-135m-instruct"
QUESTIONS = ["What is the capital of France?", "Write a haiku about rain.", "Name three fruits."]
LOOP_QUESTIONS = ["Explain gravity to a child.", "What is 7 times 8?", "List four uses of a paperclip."]
GREEDY = RoleSettings(SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=16), batch_size=4)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason="vLLM is not installed in .venv-vllm: run `make setup-vllm`"),
]


def moved(weights: FullWeights, seed: int) -> None:
    """What a DPO phase does to the weights, in one step."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in weights.model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.01)


def test_trained_roles_get_the_current_weights_and_the_seed_role_m0(tmp_path: Path) -> None:
    model, tokenizer = load_model_and_tokenizer(ModelSpec(EMBEDDED, dtype="float32"))  # as the server: float32
    weights = FullWeights(model)
    server = ServerSettings(python=str(VLLM_PYTHON), kv_cache_gb=1.0, startup_timeout_s=600)
    vllm = build_backend(
        GenerationSpec(backend="vllm", model_path=EMBEDDED, server=server), weights, tokenizer, tmp_path, 512, False
    )
    hf = Policy(weights, tokenizer, 512, progress=False, stop_ids=vllm.stop_ids)
    requests = [GenerationRequest(i, render_prompt(tokenizer, q), i) for i, q in enumerate(QUESTIONS)]

    def answers(backend, role: str) -> list[str]:
        return [g.text for g in backend.generate(role, requests, GREEDY, role)]

    try:
        m0 = answers(vllm, "actor")
        assert m0 == answers(hf, "actor") == answers(vllm, SEED_ROLE)
        assert not list(tmp_path.glob("vllm_adapters/policy-v*")), "M0's weights are served from M0's folder"
        for step in (1, 2):
            moved(weights, seed=step)
            trained = answers(vllm, "judge")
            assert trained == answers(hf, "judge") != m0
            assert answers(vllm, SEED_ROLE) == m0 and answers(vllm, "actor") == trained  # reloaded both ways
            assert [p.name for p in tmp_path.glob("vllm_adapters/policy-v*")] == [f"policy-v{step}"]
    finally:
        vllm.close()


def full_run(prompts: Path, run_dir: Path, *overrides: str) -> Path:
    """One iteration of `model.finetune=full generation=vllm` with its evaluation (in float32: `auto` resolves so
    for full fine-tuning), the server computing one request at a time so that two runs' texts compare."""
    args = smoke_train_command(
        prompts,
        run_dir,
        "model=smollm2_135m",
        "model.finetune=full",
        "generation=vllm",
        f"generation.python={VLLM_PYTHON}",
        "generation.kv_cache_gb=1",
        "num_iterations=1",
        "evaluation.num_prompts=4",
        "evaluation.judge_quality.num_pairs=4",
        VLLM_ONE_REQUEST_AT_A_TIME,
        *overrides,
    )
    done = subprocess.run(args, env=environment(), capture_output=True, text=True, timeout=1500, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_prompts(tmp_path_factory.mktemp("prompts") / "prompts.jsonl", QUESTIONS + LOOP_QUESTIONS)


@pytest.fixture(scope="module")
def one_process(prompts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return full_run(prompts, tmp_path_factory.mktemp("one") / "run")


def test_one_iteration_of_full_fine_tuning_runs_on_vllm(one_process: Path) -> None:
    summary = json.loads((one_process / "summary.json").read_text())
    assert summary["status"] == "finished"
    [iteration] = summary["iterations"]
    assert iteration["actor_pairs"] > 0 and iteration["weights"]["distance_from_seed"] > 0
    assert "win_rate" in iteration["eval"]  # the trained actor against M0, both answered by the server
    assert (one_process / "checkpoints" / "iter_01" / "policy" / "model.safetensors").is_file()


def test_two_training_processes_share_the_servers_weights_and_make_the_one_process_runs_data(
    prompts: Path, one_process: Path, tmp_path: Path
) -> None:
    # trainer=ddp with two CPU processes: rank 0 starts the one server and saves each set of trained weights; each
    # rank holds the weights its requests use, and they are reloaded only when no other rank holds them. The
    # evaluation asks for both sets (M0's baseline answers, then the trained actor's), each rank its share.
    run_dir = full_run(prompts, tmp_path / "run", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    assert stage_texts(run_dir) == stage_texts(one_process)  # the data before DPO: M0's, equal in float32
    baseline = "eval/baseline_answers.jsonl"
    assert (run_dir / baseline).read_text() == (one_process / baseline).read_text()  # M0's answers after training
    summary = json.loads((run_dir / "summary.json").read_text())
    [iteration] = summary["iterations"]
    assert iteration["stats"]["data/world_size"] == 2.0 and "win_rate" in iteration["eval"]
    log = (run_dir / "vllm_server.log").read_text(errors="replace")
    assert log.count("Starting vLLM server on") == 1, log[-3000:]  # one server for both processes
    lease = json.loads((run_dir / "vllm_adapters" / "weights.json").read_text())
    assert lease["holders"] == {} and list(lease["copies"].values()) == [
        str(run_dir.resolve() / "vllm_adapters" / "policy-v1")
    ]
