"""The self-instruct stage: round logic with a scripted generator, then real runs (tiny model; embedded, slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metareward.generation.sampler import Generation
from metareward.selfinstruct.__main__ import main as cli_main
from metareward.selfinstruct.stage import SelfInstructSettings, self_instruct, write_augmented_pool
from metareward.storage.artifacts import read_records
from metareward.storage.records import PromptRecord

SEED_POOL = Path(__file__).resolve().parents[2] / "data" / "prompts" / "seed.jsonl"
POOL = [
    PromptRecord(id=f"seed-{i}", instruction=text)
    for i, text in enumerate(
        [
            "Write a haiku about the first frost of autumn.",
            "Explain how a rainbow forms.",
            "Give three tips for sleeping well.",
        ]
    )
]


class _Scripted:
    """A generation backend that answers with the given texts, in order."""

    def __init__(self, tokenizer, outputs: list[str]) -> None:
        self.tokenizer, self.remaining = tokenizer, list(outputs)

    def generate(self, role, requests, settings, desc, cue=None, max_prompt_tokens=None):
        assert role == "actor" and max_prompt_tokens == 1024
        assert all(request.prompt.endswith("Task 4: ") for request in requests)  # 3 examples -> asks for task 4
        return [Generation(r.key, self.remaining.pop(0), 5, True) for r in requests]


def test_rounds_until_enough_prompts(tmp_path: Path) -> None:
    from metareward.model.tiny import build_tiny_tokenizer

    backend = _Scripted(
        build_tiny_tokenizer(),
        [
            "Plan a picnic for six people.",
            "Explain how a rainbow forms.",  # round 1: 1 kept, 1 duplicate
            "Hi",
            "Name four birds that cannot fly.",  # round 2: 1 too short, 1 kept
        ],
    )
    settings = SelfInstructSettings(num_prompts=2, num_examples=3, requests_per_round=2, max_rounds=5, progress=False)
    result = self_instruct(backend, POOL, settings)
    assert [p.instruction for p in result.new_prompts] == [
        "Plan a picnic for six people.",
        "Name four birds that cannot fly.",
    ]
    assert [p.id for p in result.new_prompts] == ["si-00001", "si-00002"]
    assert (result.rounds, result.generated) == (2, 4)
    assert result.drops["duplicate"] == 1 and result.drops["too_short"] == 1 and result.drops["surplus"] == 0
    written = write_augmented_pool(tmp_path / "pool.jsonl", POOL, result)
    assert written == 5
    assert read_records(tmp_path / "pool.jsonl", PromptRecord)[-1].category == "self-instruct"
    stats = json.loads((tmp_path / "pool.stats.json").read_text())
    assert stats["pool"] == 3 and stats["new_prompts"] == 2


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="num_prompts"):
        self_instruct(None, POOL, SelfInstructSettings(num_prompts=0))


def _check_output(output: Path, pool_size: int, printed: str) -> list[PromptRecord]:
    records = read_records(output, PromptRecord)
    stats = json.loads(output.with_name(output.stem + ".stats.json").read_text())
    assert len(records) == pool_size + stats["new_prompts"]
    assert sum(stats["drops"].values()) + stats["new_prompts"] == stats["generated"]
    assert "removed by filter:" in printed and "similar" in printed
    return records


def test_cli_on_tiny_model(prompt_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "pool.jsonl"
    args = [
        "--input",
        str(prompt_file),
        "--output",
        str(output),
        "--model",
        "builtin:tiny",
        "--count",
        "2",
        "--requests-per-round",
        "3",
        "--max-rounds",
        "1",
        "--max-new-tokens",
        "12",
        "--num-examples",
        "3",
        "--no-progress",
    ]
    assert cli_main(args) == 0
    first = _check_output(output, 6, capsys.readouterr().out)
    assert cli_main(args) == 0  # same seed, same prompts
    assert read_records(output, PromptRecord) == first


def test_cli_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(
        ["--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o.jsonl"), "--model", "builtin:tiny"]
    )
    assert code == 2 and "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_on_embedded_default(embedded_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "pool.jsonl"
    args = [
        "--input",
        str(SEED_POOL),
        "--output",
        str(output),
        "--count",
        "4",
        "--requests-per-round",
        "4",
        "--max-rounds",
        "1",
        "--max-new-tokens",
        "48",
        "--num-examples",
        "3",
        "--no-progress",
    ]
    assert cli_main(args) == 0
    records = _check_output(output, 324, capsys.readouterr().out)
    for record in records[324:]:
        assert record.id.startswith("si-") and record.instruction.strip()
