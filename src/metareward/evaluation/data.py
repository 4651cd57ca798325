"""Evaluation inputs: held-out prompts (optionally with reference answers), labelled judge pairs, and the cache of
baseline answers kept in the run directory so the seed model answers each prompt only once per run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from metareward.artifacts import read_records, write_records


class EvaluationDataError(ValueError):
    """A missing or malformed evaluation file."""


@dataclass(frozen=True)
class EvalPrompt:
    id: str
    instruction: str
    reference: str | None = None


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


def _rows(path: str | Path, what: str) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise EvaluationDataError(f"The {what} file {path} does not exist; point the config at a JSON Lines file.")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise EvaluationDataError(f"{path}:{number} is not valid JSON ({error.msg}).") from None
    return rows


def _field(row: dict, name: str, path: str | Path, number: int) -> object:
    if row.get(name) in (None, ""):
        raise EvaluationDataError(f"{path}: row {number} has no {name!r} field.")
    return row[name]


def load_eval_prompts(
    path: str | Path, limit: int, instruction_field: str = "instruction", reference_field: str | None = None
) -> list[EvalPrompt]:
    """The first `limit` rows (file order, so every iteration and run sees the same prompts)."""
    prompts = []
    for number, row in enumerate(_rows(path, "evaluation prompts")[:limit], start=1):
        instruction = str(_field(row, instruction_field, path, number))
        reference = str(_field(row, reference_field, path, number)) if reference_field else None
        prompts.append(EvalPrompt(str(row.get("id", f"eval-{number:04d}")), instruction, reference))
    return prompts


def load_labelled_pairs(path: str | Path, limit: int) -> list[LabelledPair]:
    """The first `limit` labelled pairs; fields instruction, good, poor, good_score, poor_score (id optional)."""
    pairs = []
    for number, row in enumerate(_rows(path, "labelled judge pairs")[:limit], start=1):
        values = {name: _field(row, name, path, number) for name in ("instruction", "good", "poor")}
        scores = {name: float(_field(row, name, path, number)) for name in ("good_score", "poor_score")}
        pairs.append(LabelledPair(str(row.get("id", f"pair-{number:04d}")), **values, **scores))  # type: ignore[arg-type]
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
