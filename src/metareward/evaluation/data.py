"""Evaluation inputs: held-out prompts (optionally with reference answers), labelled judge pairs, and the cache of
baseline answers kept in the run directory so the seed model answers each prompt only once per run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from metareward.storage.artifacts import read_records, write_records
from metareward.storage.chat_rows import RowProblem, chat_prompt
from metareward.storage.datafiles import file_problem, id_problem, json_objects, json_type, text_field_problem

# Where a row in the conversational format holds its messages.
MESSAGES_FIELD = "messages"


class EvaluationDataError(ValueError):
    """A missing or malformed evaluation file."""


@dataclass(frozen=True)
class EvalPrompt:
    id: str
    instruction: str
    reference: str | None = None
    system: str = ""  # the system prompt the answers are asked with (a row in chat format may give one)


@dataclass(frozen=True)
class LabelledPair:
    """An instruction with a better and a worse answer and their rubric scores (good_score > poor_score)."""

    id: str
    instruction: str
    good: str
    poor: str
    good_score: float
    poor_score: float


@dataclass(frozen=True)
class BaselineAnswer:
    prompt_id: str
    text: str
    source: str  # "seed" (answered by M0) or "reference" (given in the evaluation data)
    finished: bool | None = None  # whether M0's answer ended before max_new_tokens; None for a reference answer


def _rows(path: str | Path, what: str, key: str) -> list[dict]:
    path = Path(path).expanduser()
    problem = file_problem(path, key, f"a JSON Lines file of {what}")
    if problem:
        raise EvaluationDataError(problem)
    rows = [row for _, row in json_objects(path, EvaluationDataError)]
    if not rows:
        raise EvaluationDataError(f"{key}={str(path)!r} holds no rows; point it at a JSON Lines file of {what}")
    return rows


def _text(row: dict, name: str, path: str | Path, number: int) -> str:
    where = f"{path}: row {number}"
    if row.get(name) is None or row.get(name) == "":
        raise EvaluationDataError(f"{where} has no {name!r} field; every row needs it as text")
    problem = text_field_problem(row, name, where)
    if problem is None and not row[name].strip():
        problem = f"{where}: the text field {name!r} is empty"
    if problem:
        raise EvaluationDataError(problem)
    return row[name]


def _score(row: dict, name: str, path: str | Path, number: int) -> float:
    value = row.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        found = "nothing" if value is None else json_type(value)
        raise EvaluationDataError(f"{path}: row {number}: the field {name!r} holds {found}; it must be a number")
    return float(value)


def _row_id(row: dict, default: str, path: str | Path, number: int, seen: dict[str, int]) -> str:
    problem = id_problem(row, f"{path}: row {number}")
    if problem:
        raise EvaluationDataError(problem)
    row_id = str(row.get("id", default))
    if row_id in seen:
        raise EvaluationDataError(
            f"{path}: row {number}: duplicate id {row_id!r} (first in row {seen[row_id]}); give every row its own id"
        )
    seen[row_id] = number
    return row_id


def load_eval_prompts(
    path: str | Path, limit: int, instruction_field: str = "instruction", reference_field: str | None = None
) -> list[EvalPrompt]:
    """The first `limit` rows (file order, so every iteration and run sees the same prompts). A row without
    `instruction_field` may give its prompt as chat messages in `messages` (`storage.chat_rows`)."""
    prompts, seen = [], {}
    for number, row in enumerate(_rows(path, "evaluation prompts", "evaluation.data_path")[:limit], start=1):
        instruction, system = _asked(row, instruction_field, path, number)
        reference = _text(row, reference_field, path, number) if reference_field else None
        row_id = _row_id(row, f"eval-{number:04d}", path, number, seen)
        prompts.append(EvalPrompt(row_id, instruction, reference, system))
    return prompts


def _asked(row: dict, instruction_field: str, path: str | Path, number: int) -> tuple[str, str]:
    """A row's instruction and system prompt: text in `instruction_field`, or chat messages in `messages`."""
    if instruction_field in row or MESSAGES_FIELD not in row:
        return _text(row, instruction_field, path, number), ""
    asked = chat_prompt(row[MESSAGES_FIELD], MESSAGES_FIELD, f"{path}: row {number}")
    if isinstance(asked, RowProblem):
        raise EvaluationDataError(asked.message)
    if not asked.instruction.strip():
        raise EvaluationDataError(f"{path}: row {number}: the user message in {MESSAGES_FIELD!r} is empty")
    return asked.instruction, asked.system


def load_labelled_pairs(path: str | Path, limit: int) -> list[LabelledPair]:
    """The first `limit` labelled pairs; fields instruction, good, poor, good_score, poor_score (id optional)."""
    pairs, seen = [], {}
    key = "evaluation.judge_quality.data_path"
    for number, row in enumerate(_rows(path, "labelled judge pairs", key)[:limit], start=1):
        values = {name: _text(row, name, path, number) for name in ("instruction", "good", "poor")}
        scores = {name: _score(row, name, path, number) for name in ("good_score", "poor_score")}
        pair_id = _row_id(row, f"pair-{number:04d}", path, number, seen)
        pairs.append(LabelledPair(pair_id, **values, **scores))  # type: ignore[arg-type]
    return pairs


def cached_baseline(path: Path, prompts: Sequence[EvalPrompt]) -> list[BaselineAnswer] | None:
    """The cached baseline answers when the cache holds exactly these prompts, else None."""
    if not path.is_file():
        return None
    cached = {a.prompt_id: a for a in read_records(path, BaselineAnswer)}
    if set(cached) != {p.id for p in prompts}:
        return None
    return [cached[p.id] for p in prompts]


def save_baseline(path: Path, answers: Sequence[BaselineAnswer]) -> None:
    write_records(path, answers)
