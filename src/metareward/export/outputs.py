"""The benchmark answer files, each written atomically (`metareward.storage.artifacts`), so a crash leaves none half-written.

- alpaca_eval's `model_outputs` (`model_outputs.json`): a JSON list of `{"instruction", "output", "generator"}`,
  plus `"dataset"` when the prompt file had it; `alpaca_eval --model_outputs model_outputs.json` reads it as it is
  (alpaca_eval matches outputs to its reference answers by `instruction`, so the instruction is written exactly as
  the prompt file gave it).
- Arena-Hard-Auto's model answers (`arena_hard_answers.jsonl`): one line per question, `{"question_id",
  "answer_id", "model_id", "choices": [{"index": 0, "turns": [{"content", "token_len"}]}], "tstamp"}`, with
  `conv_metadata.token_len` as well (Arena-Hard's result script reads either). `token_len` counts the answer in the
  exported model's own tokens, not in GPT tokens as Arena-Hard's API answers do.
- FastChat's MT-Bench model answers (`mt_bench_answers.jsonl`, to be copied to FastChat's
  `data/mt_bench/model_answer/<model_id>.jsonl`): one line per question, `{"question_id", "answer_id", "model_id",
  "choices": [{"index": 0, "turns": ["answer 1", "answer 2"]}], "tstamp"}`, the turns as plain strings. A question
  with a turn left unanswered (its conversation grew over the prompt limit) is left out: MT-Bench's judge reads
  every turn of an answer.

The first two take single-turn prompt files, the last only MT-Bench's question files (`OutputFormat.multi_turn`);
`selected_formats` picks the files of a `--format` for a prompt file and refuses a format that does not fit it.
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
class TurnAnswer:
    """The model's answer to one user turn: its text (no end token), its length in tokens, and whether the model
    ended it itself (False: it hit max_new_tokens)."""

    text: str
    num_tokens: int
    finished: bool


@dataclass(frozen=True)
class BenchmarkAnswer:
    """The model's answers to one prompt, one per user turn answered, in order. Single-turn files have one; an
    MT-Bench question has one per turn, or fewer when a later turn's conversation grew over the prompt limit.
    `text`, `num_tokens` and `finished` are the first turn's, which is all the single-turn formats write."""

    prompt: BenchmarkPrompt
    turns: tuple[TurnAnswer, ...]

    @property
    def text(self) -> str:
        return self.turns[0].text

    @property
    def num_tokens(self) -> int:
        return self.turns[0].num_tokens

    @property
    def finished(self) -> bool:
        return self.turns[0].finished

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(turn.text for turn in self.turns)

    @property
    def complete(self) -> bool:
        """Whether every user turn of the prompt got its answer."""
        return len(self.turns) == len(self.prompt.turns)


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


def mt_bench_rows(answers: Sequence[BenchmarkAnswer], generator: str, tstamp: float) -> list[dict[str, Any]]:
    """FastChat's answer rows for the answers with every turn; the others are left out (and listed in the stats)."""
    return [
        {
            "question_id": answer.prompt.question_id,
            "answer_id": answer_id(generator, answer.prompt.question_id),
            "model_id": generator,
            "choices": [{"index": 0, "turns": list(answer.texts)}],
            "tstamp": tstamp,
        }
        for answer in answers
        if answer.complete
    ]


def write_alpaca_eval(path: Path, answers: Sequence[BenchmarkAnswer], generator: str, tstamp: float) -> None:
    write_json(path, alpaca_eval_rows(answers, generator))


def write_arena_hard(path: Path, answers: Sequence[BenchmarkAnswer], generator: str, tstamp: float) -> None:
    _write_jsonl(path, arena_hard_rows(answers, generator, tstamp))


def write_mt_bench(path: Path, answers: Sequence[BenchmarkAnswer], generator: str, tstamp: float) -> None:
    _write_jsonl(path, mt_bench_rows(answers, generator, tstamp))


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    write_text_atomic(path, "".join(line + "\n" for line in lines))


@dataclass(frozen=True)
class OutputFormat:
    """A benchmark's answer file: its name in the output folder, the function that writes it, and whether it takes
    multi-turn questions (MT-Bench's) rather than single-turn prompts: no format takes both."""

    name: str
    file_name: str
    write: Callable[[Path, Sequence[BenchmarkAnswer], str, float], None]
    multi_turn: bool = False


OUTPUT_FORMATS = {
    "alpaca_eval": OutputFormat("alpaca_eval", "model_outputs.json", write_alpaca_eval),
    "arena_hard": OutputFormat("arena_hard", "arena_hard_answers.jsonl", write_arena_hard),
    "mt_bench": OutputFormat("mt_bench", "mt_bench_answers.jsonl", write_mt_bench, multi_turn=True),
}
# The default `--format`: every file that fits the prompt file (alpaca_eval and arena_hard for single-turn prompts,
# mt_bench for MT-Bench's questions). The name predates MT-Bench, when it meant the two single-turn files.
ALL_FORMATS = "both"
STATS_FILE = "export_stats.json"


class FormatMismatch(ValueError):
    """A `--format` that cannot be written from the prompt file given; the message says which would be."""


def selected_formats(name: str, multi_turn: bool = False) -> tuple[OutputFormat, ...]:
    """The files of `--format=name` for a prompt file with (True) or without follow-up turns: `both` gives every
    format that fits it; a named format must fit it, else FormatMismatch. Answering only the first turn of MT-Bench
    questions for a single-turn benchmark, or writing single-turn prompts as MT-Bench answers, would make files a
    benchmark reads but judges on the wrong questions, so neither is done."""
    fitting = tuple(output for output in OUTPUT_FORMATS.values() if output.multi_turn == multi_turn)
    if name == ALL_FORMATS:
        return fitting
    if OUTPUT_FORMATS[name].multi_turn != multi_turn:
        given = "an MT-Bench question file (turns as text)" if multi_turn else "a single-turn prompt file"
        raise FormatMismatch(
            f"--format={name} cannot be written from {given}; use --format "
            f"{' or '.join(output.name for output in fitting)} (or {ALL_FORMATS}, the default, which picks it)"
        )
    return (OUTPUT_FORMATS[name],)


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
