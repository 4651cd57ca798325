"""Evaluators: the local probability reader (seed model = adapters off), reply parsing, and a real
OpenAI-compatible server (`transformers serve`) started on loopback by the test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import compose

from metareward.evaluation.evaluators import (
    CHOICES,
    COMPARISON_CUE,
    BackendEvaluator,
    LocalModelEvaluator,
    OpenAIChatEvaluator,
    _fixed,
    read_reply,
    render_comparison_prompt,
)
from metareward.evaluation.settings import build_evaluator, checked_evaluator
from metareward.generation.choice_probs import choice_distribution
from metareward.generation.policy import Policy
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.chat import render_prompt
from metareward.model.tiny import build_tiny

COMPARISONS = [
    ("Name a primary colour.", "Red.", "Bananas are yellow and grow in bunches."),
    ("What is 2 + 2?", "5", "4"),
]


def test_local_evaluator_reads_p_a_after_the_cue() -> None:
    model, tokenizer = build_tiny()
    evaluator = LocalModelEvaluator(lambda: _fixed(model), tokenizer, batch_size=2, max_prompt_tokens=2048)
    got = evaluator.prefer_many(COMPARISONS)
    contexts = [render_prompt(tokenizer, render_comparison_prompt(*c)) + COMPARISON_CUE for c in COMPARISONS]
    expected = choice_distribution(model, tokenizer, contexts, CHOICES, progress=False).probabilities[:, 0]
    assert got == pytest.approx(list(expected)) and all(0 < p < 1 for p in got)
    assert evaluator.prefer(*COMPARISONS[1]) == pytest.approx(got[1])


def test_seed_evaluator_is_the_base_model_with_adapters_off() -> None:
    base, tokenizer = build_tiny()
    fresh, _ = build_tiny()  # same seed: the same weights as the base before wrapping
    adapters = RoleAdapters(base, AdapterSpec(r=4, alpha=8))
    with torch.no_grad():  # move every adapter away from zero so adapters-on differs from M0
        for name, parameter in adapters.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5)
    seed = BackendEvaluator(8, 2048).attach(Policy(adapters, tokenizer, progress=False)).prefer_many(COMPARISONS)
    reference = LocalModelEvaluator(lambda: _fixed(fresh), tokenizer, 8, 2048).prefer_many(COMPARISONS)
    adapted = LocalModelEvaluator(lambda: _fixed(adapters.model), tokenizer, 8, 2048).prefer_many(COMPARISONS)
    assert seed == pytest.approx(reference, abs=1e-6)
    assert not np.allclose(seed, adapted, atol=1e-6)


def test_read_reply_prefers_logprobs_then_the_written_letter() -> None:
    top = [
        {"token": " A", "logprob": np.log(0.3)},
        {"token": "B", "logprob": np.log(0.1)},
        {"token": "x", "logprob": -1},
    ]
    with_logprobs = {
        "message": {"content": "A"},
        "logprobs": {"content": [{"token": "A", "logprob": -1, "top_logprobs": top}]},
    }
    assert read_reply(with_logprobs) == pytest.approx(0.75)
    assert read_reply({"message": {"content": "Answer B is better."}}) == 0.0
    assert read_reply({"message": {"content": "A"}, "logprobs": None}) == 1.0
    assert read_reply({"message": {"content": "neither"}}) is None


def test_evaluator_settings_report_every_problem() -> None:
    assert checked_evaluator({"kind": "judge"}) == (
        None,
        ["evaluation.evaluator._target_=None is not a class path; name one as package.module.Class"],
    )
    openai = " ".join(checked_evaluator(compose("evaluation/evaluator=openai").evaluation.evaluator)[1])
    assert "evaluation.evaluator.base_url is not set" in openai and "evaluation.evaluator.model is not set" in openai
    with pytest.raises(ValueError, match="evaluation.evaluator.path is not set"):
        build_evaluator(compose("evaluation/evaluator=model").evaluation.evaluator)


def test_the_api_key_is_never_shown(monkeypatch) -> None:
    monkeypatch.setenv("METAREWARD_TEST_KEY", "sk-secret-123")
    evaluator = OpenAIChatEvaluator("http://127.0.0.1:9", "m", "METAREWARD_TEST_KEY", 1, 5, timeout_s=2)
    assert "sk-secret" not in repr(evaluator)
    with pytest.raises(Exception) as error:  # nothing listens on port 9
        evaluator.prefer(*COMPARISONS[0])
    assert "sk-secret" not in str(error.value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def chat_server(embedded_checkpoint: Path, tmp_path: Path):
    """`transformers serve` (the `serving` extra) on a free loopback port, serving the embedded model offline."""
    cli = Path(sys.executable).with_name("transformers")
    if not cli.exists() and shutil.which("transformers") is None:
        pytest.skip("the transformers CLI is not installed")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    command = [
        str(cli if cli.exists() else "transformers"),
        "serve",
        str(embedded_checkpoint),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
    ]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"transformers serve did not start: {(tmp_path / 'serve.log').read_text()[-2000:]}"
                    )
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1", str(embedded_checkpoint)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_openai_evaluator_against_a_real_local_server(chat_server, monkeypatch) -> None:
    base_url, model_name = chat_server
    monkeypatch.setenv("METAREWARD_TEST_KEY", "not-a-real-key")
    node = compose(
        "evaluation/evaluator=openai",
        f"evaluation.evaluator.base_url={base_url}",
        f"evaluation.evaluator.model={model_name}",
        "evaluation.evaluator.api_key_env=METAREWARD_TEST_KEY",
    ).evaluation.evaluator
    evaluator = build_evaluator(node).attach(None)  # type: ignore[arg-type]  # an endpoint reads no backend
    preferences = evaluator.prefer_many(COMPARISONS + [(c[0], c[2], c[1]) for c in COMPARISONS])
    assert len(preferences) == 4 and all(0.0 <= p <= 1.0 for p in preferences)
    assert evaluator.unreadable < 4  # the 135M model answers with a letter at least once
