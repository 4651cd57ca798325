"""Benchmark prompt files, read into one shape: alpaca_eval's eval set, our JSON Lines, Arena-Hard's questions.

- alpaca_eval: a JSON list of objects with `instruction` (and maybe `dataset`, kept in the outputs; the reference
  `output` and `generator` of the file are ignored);
- ours (`data/eval/heldout.jsonl`): JSON Lines with `instruction` (`id` optional);
- Arena-Hard (`question.jsonl`): JSON Lines with `question_id` and `turns: [{"content": ...}]`; the first turn is
  the prompt (Arena-Hard v0.1 questions have one turn).

Which one a file is comes from its content: a file whose text starts with `[` is a JSON list, else JSON Lines,
which are Arena-Hard questions when the first row has `turns`. A bad file ends in one sentence naming the file,
the row and the fix (`PromptFileError`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from metareward.storage.datafiles import file_problem, json_objects, json_type, text_field_problem

KEY = "--prompts"
WHAT = "a prompt file (alpaca_eval's JSON list, JSON Lines with `instruction`, or Arena-Hard's question.jsonl)"


class PromptFileError(ValueError):
    """A missing or malformed prompt file; the message names the file, the row and the fix."""


@dataclass(frozen=True)
class BenchmarkPrompt:
    """One prompt. `question_id` is the file's own id (Arena-Hard's `question_id`, else `id`, else the row number),
    written back unchanged into the Arena-Hard answers; `dataset` is alpaca_eval's subset name, when given."""

    question_id: str | int
    instruction: str
    dataset: str | None = None

    @property
    def key(self) -> str:
        return str(self.question_id)


@dataclass(frozen=True)
class PromptFile:
    path: Path
    kind: str  # alpaca_eval, jsonl or arena_hard
    prompts: tuple[BenchmarkPrompt, ...]


def load_benchmark_prompts(path: str | Path) -> PromptFile:
    """Every prompt of the file, in file order; ids must be unique, since answers are matched to them."""
    path = Path(path).expanduser()
    problem = file_problem(path, KEY, WHAT)
    if problem:
        raise PromptFileError(problem)
    if _starts_with_bracket(path):
        kind, prompts = "alpaca_eval", _alpaca_prompts(path)
    else:
        rows = list(json_objects(path, PromptFileError))
        kind = "arena_hard" if rows and "turns" in rows[0][1] else "jsonl"
        read = _arena_prompt if kind == "arena_hard" else _instruction_prompt
        prompts = [read(row, f"{path}:{number}", number) for number, row in rows]
    if not prompts:
        raise PromptFileError(f"{KEY}={str(path)!r} holds no prompts; point it at {WHAT}")
    _check_unique(prompts, path)
    return PromptFile(path, kind, tuple(prompts))


def _starts_with_bracket(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8-sig") as stream:
            head = stream.read(4096).lstrip()
    except UnicodeDecodeError as error:
        raise PromptFileError(f"{path}: is not UTF-8 text ({error.reason}); save the file as UTF-8 JSON") from None
    return head.startswith("[")


def _alpaca_prompts(path: Path) -> list[BenchmarkPrompt]:
    """alpaca_eval's eval set: `[{"instruction": ..., "dataset": ...}, ...]`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as error:
        raise PromptFileError(f"{path}: is not UTF-8 text ({error.reason}); save the file as UTF-8 JSON") from None
    except json.JSONDecodeError as error:
        raise PromptFileError(
            f"{path}:{error.lineno}: not valid JSON ({error.msg}); an alpaca_eval file is one JSON list of objects"
        ) from None
    if not isinstance(data, list):
        raise PromptFileError(f"{path}: expected a JSON list of objects with `instruction`, found {json_type(data)}")
    prompts = []
    for number, row in enumerate(data, start=1):
        where = f"{path}: item {number}"
        if not isinstance(row, dict):
            raise PromptFileError(f"{where}: expected a JSON object with `instruction`, found {json_type(row)}")
        prompts.append(_instruction_prompt(row, where, number))
    return prompts


def _instruction_prompt(row: dict, where: str, number: int) -> BenchmarkPrompt:
    instruction = _text(row, "instruction", where)
    dataset = row.get("dataset")
    if dataset is not None and not isinstance(dataset, str):
        raise PromptFileError(f"{where}: the field 'dataset' holds {json_type(dataset)}, not text")
    return BenchmarkPrompt(_question_id(row, "id", where, default=number), instruction, dataset)


def _arena_prompt(row: dict, where: str, number: int) -> BenchmarkPrompt:
    """An Arena-Hard question: `{"question_id": ..., "turns": [{"content": ...}, ...]}`; the first turn is asked."""
    if "question_id" not in row:
        raise PromptFileError(f"{where}: missing the field 'question_id' (the first row has `turns`: Arena-Hard)")
    turns = row.get("turns")
    if not isinstance(turns, list) or not turns or not isinstance(turns[0], dict):
        found = json_type(turns) if not isinstance(turns, list) or not turns else json_type(turns[0])
        raise PromptFileError(f"{where}: `turns` must be a list of objects with `content`, found {found}")
    content = _text(turns[0], "content", f"{where}: turns[0]")
    return BenchmarkPrompt(_question_id(row, "question_id", where, default=number), content)


def _text(row: dict, name: str, where: str) -> str:
    problem = text_field_problem(row, name, where)
    if problem is None and not row[name].strip():
        problem = f"{where}: the text field {name!r} is empty"
    if problem:
        raise PromptFileError(f"{problem}; every prompt needs it as text")
    return row[name]


def _question_id(row: dict, name: str, where: str, default: int) -> str | int:
    value = row.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        found = json_type(value)
        raise PromptFileError(f"{where}: the field {name!r} holds {found}; ids must be text or whole numbers")
    return value


def _check_unique(prompts: list[BenchmarkPrompt], path: Path) -> None:
    seen: dict[str, int] = {}
    for number, prompt in enumerate(prompts, start=1):
        if prompt.key in seen:
            raise PromptFileError(
                f"{path}: prompt {number} repeats the id {prompt.key!r} of prompt {seen[prompt.key]}; give every "
                "prompt its own id"
            )
        seen[prompt.key] = number
