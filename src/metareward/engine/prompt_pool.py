"""The prompt pool: loading it from a local file or a Hugging Face dataset, and drawing each iteration's sample."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from metareward.core.seeding import derive_seed
from metareward.records import PromptRecord

DATASETS_SUFFIXES = {".json": "json", ".csv": "csv", ".parquet": "parquet"}


class PromptPoolError(ValueError):
    """The prompt file or dataset cannot be used; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class PromptPool:
    prompts: tuple[PromptRecord, ...]
    source: str
    drops: dict[str, int] = field(default_factory=dict)

    def sample(self, iteration: int, count: int, seed: int) -> list[PromptRecord]:
        """Iteration t's prompts: consecutive slices of one seeded permutation of the pool.

        Iterations see disjoint prompts until the pool is used up; then the permutation wraps around.
        """
        order = list(range(len(self.prompts)))
        random.Random(derive_seed(seed, "prompt-order")).shuffle(order)
        start = (iteration - 1) * count
        return [self.prompts[order[(start + i) % len(order)]] for i in range(min(count, len(order)))]


def load_prompt_pool(
    path: str, instruction_field: str = "instruction", split: str = "train", max_prompt_chars: int | None = None
) -> PromptPool:
    local = Path(path).expanduser()
    if local.suffix == ".jsonl":
        if not local.is_file():
            raise PromptPoolError(f"data.path={path!r} does not exist; point it at a JSONL file of prompts")
        rows = _read_jsonl_rows(local)
    else:
        rows = _read_with_datasets(path, split)
    return _pool_from_rows(rows, str(path), instruction_field, max_prompt_chars)


def _read_jsonl_rows(path: Path) -> list[tuple[int, dict]]:
    rows = []
    with path.open(encoding="utf-8") as stream:
        for line_number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise PromptPoolError(f"{path}:{line_number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise PromptPoolError(f"{path}:{line_number}: expected a JSON object, found {type(row).__name__}")
            rows.append((line_number, row))
    return rows


def _read_with_datasets(path: str, split: str) -> list[tuple[int, dict]]:
    import datasets

    local = Path(path).expanduser()
    try:
        if local.exists():
            builder = DATASETS_SUFFIXES.get(local.suffix)
            if builder is None:
                known = ", ".join([".jsonl", *DATASETS_SUFFIXES])
                raise PromptPoolError(f"data.path={path!r} has an unknown file type; use one of {known}")
            dataset = datasets.load_dataset(builder, data_files=str(local), split="train")
        else:
            dataset = datasets.load_dataset(path, split=split)
    except PromptPoolError:
        raise
    except Exception as error:  # datasets raises many types; the user needs the one sentence
        raise PromptPoolError(f"could not load data.path={path!r} with datasets: {error}") from None
    return [(index + 1, dict(row)) for index, row in enumerate(dataset)]


def _pool_from_rows(
    rows: list[tuple[int, dict]], source: str, instruction_field: str, max_prompt_chars: int | None
) -> PromptPool:
    if not rows:
        raise PromptPoolError(f"{source}: holds no prompts")
    prompts: list[PromptRecord] = []
    drops: Counter[str] = Counter()
    seen_ids: dict[str, int] = {}
    for line_number, row in rows:
        instruction = row.get(instruction_field)
        if not isinstance(instruction, str):
            raise PromptPoolError(f"{source}:{line_number}: missing the text field {instruction_field!r}")
        if not instruction.strip():
            drops["empty_instruction"] += 1
            continue
        if max_prompt_chars is not None and len(instruction) > max_prompt_chars:
            drops["too_long"] += 1
            continue
        prompt_id = str(row.get("id", f"{Path(source).stem}-{line_number}"))
        if prompt_id in seen_ids:
            raise PromptPoolError(
                f"{source}:{line_number}: duplicate id {prompt_id!r} (first on line {seen_ids[prompt_id]})"
            )
        seen_ids[prompt_id] = line_number
        prompts.append(PromptRecord(id=prompt_id, instruction=instruction.strip(), category=str(row.get("category", ""))))
    if not prompts:
        raise PromptPoolError(f"{source}: no usable prompts (dropped: {dict(drops)})")
    return PromptPool(prompts=tuple(prompts), source=source, drops=dict(drops))
