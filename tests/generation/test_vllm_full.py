"""Full fine-tuning on the vLLM backend: the server's weights are reloaded in place, so every trained role answers
with the current weights and the seed role with M0's, exactly as the HF backend does; and one iteration of
`train.py` with `model.finetune=full generation=vllm` runs through."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import REPO_ROOT, environment, smoke_train_command

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


def test_one_iteration_of_full_fine_tuning_runs_on_vllm(prompt_file: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = smoke_train_command(
        prompt_file,
        run_dir,
        "model=smollm2_135m",
        "model.finetune=full",
        "generation=vllm",
        f"generation.python={VLLM_PYTHON}",
        "generation.kv_cache_gb=1",
        "num_iterations=1",
        "evaluation.num_prompts=4",
        "evaluation.judge_quality.num_pairs=4",
    )
    done = subprocess.run(args, env=environment(), capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    [iteration] = summary["iterations"]
    assert iteration["actor_pairs"] > 0 and iteration["weights"]["distance_from_seed"] > 0
    assert "win_rate" in iteration["eval"]  # the trained actor against M0, both answered by the server
    assert (run_dir / "checkpoints" / "iter_01" / "policy" / "model.safetensors").is_file()
