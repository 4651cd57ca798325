"""The benchmark answer files, each written atomically (`metareward.storage.artifacts`), so a crash leaves none half-written.

- alpaca_eval's `model_outputs` (`model_outputs.json`): a JSON list of `{"instruction", "output", "generator"}`,
  plus `"dataset"` when the prompt file had it; `alpaca_eval --model_outputs model_outputs.json` reads it as it is
  (alpaca_eval matches outputs to its reference answers by `instruction`, so the instruction is written exactly as
  the prompt file gave it).
- Arena-Hard-Auto's model answers (`arena_hard_answers.jsonl`): one line per question, `{"question_id",
  "answer_id", "model_id", "choices": [{"index": 0, "turns": [{"content", "token_len"}]}], "tstamp"}`, with
  `conv_metadata.token_len` as well (Arena-Hard's result script reads either). `token_len` counts the answer in the
  exported model's own tokens, not in GPT tokens as Arena-Hard's API answers do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metareward.export.prompts import BenchmarkPrompt
from metareward.storage.artifacts import write_json, write_text_atomic


@dataclass(frozen=True)
class BenchmarkAnswer:
    """The model's answer to one prompt: its text (no end token), its length in tokens, and whether the model ended
    it itself (False: it hit max_new_tokens)."""

    prompt: BenchmarkPrompt
    text: str
    num_tokens: int
    finished: bool


def alpaca_eval_rows(answers: Sequence[BenchmarkAnswer], generator: str) -> list[dict[str, Any]]:
    rows = []
    for answer in answers:
        row = {"instruction": answer.prompt.instruction, "output": answer.text, "generator": generator}
        if answer.prompt.dataset is not None:
            row["dataset"] = answer.prompt.dataset
        rows.append(row)
    return rows


def answer_id(generator: str, question_id: str | int) -> str:
    """A stable id for (generator, question): rerunning an export gives the same ids (Arena-Hard uses shortuuid)."""
    return hashlib.sha256(f"{generator}\x00{question_id}".encode()).hexdigest()[:22]


def arena_hard_rows(answers: Sequence[BenchmarkAnswer], generator: str, tstamp: float) -> list[dict[str, Any]]:
    return [
        {
            "question_id": answer.prompt.question_id,
            "answer_id": answer_id(generator, answer.prompt.question_id),
            "model_id": generator,
            "choices": [{"index": 0, "turns": [{"content": answer.text, "token_len": answer.num_tokens}]}],
            "tstamp": tstamp,
            "conv_metadata": {"token_len": answer.num_tokens},
        }
        for answer in answers
    ]


def write_alpaca_eval(path: Path, answers: Sequence[BenchmarkAnswer], generator: str, tstamp: float) -> None:
    write_json(path, alpaca_eval_rows(answers, generator))


def write_arena_hard(path: Path, answers: Sequence[BenchmarkAnswer], generator: str, tstamp: float) -> None:
    lines = [json.dumps(row, ensure_ascii=False) for row in arena_hard_rows(answers, generator, tstamp)]
    write_text_atomic(path, "".join(line + "\n" for line in lines))


@dataclass(frozen=True)
class OutputFormat:
    """A benchmark's answer file: its name in the output folder and the function that writes it."""

    name: str
    file_name: str
    write: Callable[[Path, Sequence[BenchmarkAnswer], str, float], None]


OUTPUT_FORMATS = {
    "alpaca_eval": OutputFormat("alpaca_eval", "model_outputs.json", write_alpaca_eval),
    "arena_hard": OutputFormat("arena_hard", "arena_hard_answers.jsonl", write_arena_hard),
}
ALL_FORMATS = "both"
STATS_FILE = "export_stats.json"


def selected_formats(name: str) -> tuple[OutputFormat, ...]:
    """`alpaca_eval`, `arena_hard`, or `both`."""
    return tuple(OUTPUT_FORMATS.values()) if name == ALL_FORMATS else (OUTPUT_FORMATS[name],)


def write_outputs(
    out_dir: Path, formats: Sequence[OutputFormat], answers: Sequence[BenchmarkAnswer], generator: str, tstamp: float
) -> list[Path]:
    """Write every selected answer file into `out_dir`; returns their paths."""
    paths = []
    for output in formats:
        path = out_dir / output.file_name
        output.write(path, answers, generator, tstamp)
        paths.append(path)
    return paths
