"""Shared fixtures: the tiny in-process model, the embedded checkpoint (slow tests), Hydra composition."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


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
    import json

    instructions = [
        "Name three fruits and describe their taste.",
        "Explain gravity to a ten-year-old.",
        "Write a haiku about rain.",
        "What is 7 times 8? Show your reasoning.",
        "Give three tips for sleeping well.",
        "List four uses of a paperclip.",
    ]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "instruction": q}) + "\n" for i, q in enumerate(instructions)))
    return path
