"""Shared fixtures: the tiny in-process model, the embedded checkpoint (slow tests), thread settings."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from deprecations import deprecations_from_our_code
from helpers import vllm_process_ids, write_prompts

# Tiny models gain nothing from intra-op threads and lose a lot when two processes fight over two cores, so tests
# (and the training runs they start as subprocesses, which inherit this) use one thread; tests of the embedded
# model (marked slow) get the machine's threads back through the fixture below. Set before torch is first imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _threads_for_the_model_size(request: pytest.FixtureRequest):
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads((os.cpu_count() or 1) if request.node.get_closest_marker("slow") else 1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _no_deprecated_calls_of_ours(request: pytest.FixtureRequest):
    """A test fails when our code calls a deprecated API (of transformers, PEFT, Lightning, torch, ...), so the next
    rename is caught the day a release makes it (tests/deprecations.py says what counts as ours)."""
    if request.node.get_closest_marker("own_deprecation_guard"):
        yield
        return
    with deprecations_from_our_code() as found:
        yield
    assert not found, "deprecated calls from our code:\n" + "\n".join(dict.fromkeys(found))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def embedded_checkpoint() -> Path:
    """The converted SmolLM2 checkpoint (made by `make setup`); converted here if missing."""
    from metareward.model.embedded import ensure_embedded_checkpoint

    return ensure_embedded_checkpoint()


@pytest.fixture()
def prompt_file(tmp_path: Path) -> Path:
    instructions = [
        "Name three fruits and describe their taste.",
        "Explain gravity to a ten-year-old.",
        "Write a haiku about rain.",
        "What is 7 times 8? Show your reasoning.",
        "Give three tips for sleeping well.",
        "List four uses of a paperclip.",
    ]
    path = tmp_path / "prompts.jsonl"
    write_prompts(path, instructions)
    return path


@pytest.fixture(autouse=True)
def _no_vllm_process_outlives_its_test(request: pytest.FixtureRequest):
    """The vLLM processes a test of a vLLM module started and left running are killed after it, so that its failure
    is its own and the next test's check that no server outlived its run does not fail on it. (A module's own
    server, started by a module fixture before the test, is left alone.)"""
    if "vllm" not in request.module.__name__:
        yield
        return
    before = vllm_process_ids().keys()
    yield
    for pid in vllm_process_ids().keys() - before:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
