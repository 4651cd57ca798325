"""The prompt pool: loading it from a local file or a Hugging Face dataset, and drawing each iteration's sample."""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from metareward.core.seeding import derive_seed
from metareward.records import PromptRecord

log = logging.getLogger(__name__)
DATASETS_SUFFIXES = {".json": "json", ".csv": "csv", ".parquet": "parquet"}
# What a bad line (not JSON, not an object, no instruction, a repeated id) does: stop the run, or skip it and count it.
BAD_LINE_POLICIES = ("fail", "skip")


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


class _BadLines:
    """Applies the bad-line policy: raise at once (fail) or count the line by reason and go on (skip)."""

    def __init__(self, policy: str) -> None:
        if policy not in BAD_LINE_POLICIES:
            raise PromptPoolError(f"data.on_bad_line={policy!r} is not one of {list(BAD_LINE_POLICIES)}")
        self.policy = policy
        self.counts: Counter[str] = Counter()

    def __call__(self, reason: str, message: str) -> None:
        if self.policy == "fail":
            raise PromptPoolError(f"{message} (set data.on_bad_line=skip to skip such lines and count them)")
        self.counts[reason] += 1
        log.warning("skipping %s", message)


def load_prompt_pool(
    path: str,
    instruction_field: str = "instruction",
    split: str = "train",
    max_prompt_chars: int | None = None,
    on_bad_line: str = "fail",
) -> PromptPool:
    bad = _BadLines(on_bad_line)
    local = Path(path).expanduser()
    if local.suffix == ".jsonl":
        if not local.is_file():
            raise PromptPoolError(f"data.path={path!r} does not exist; point it at a JSONL file of prompts")
        rows = _read_jsonl_rows(local, bad)
    else:
        rows = _read_with_datasets(path, split)
    return _pool_from_rows(rows, str(path), instruction_field, max_prompt_chars, bad)


def _read_jsonl_rows(path: Path, bad: _BadLines) -> list[tuple[int, dict]]:
    rows = []
    with path.open(encoding="utf-8") as stream:
        for line_number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                bad("malformed_line", f"{path}:{line_number}: not valid JSON ({error.msg})")
                continue
            if not isinstance(row, dict):
                bad("malformed_line", f"{path}:{line_number}: expected a JSON object, found {type(row).__name__}")
                continue
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
    rows: list[tuple[int, dict]], source: str, instruction_field: str, max_prompt_chars: int | None, bad: _BadLines
) -> PromptPool:
    if not rows and not bad.counts:
        raise PromptPoolError(f"{source}: holds no prompts")
    prompts: list[PromptRecord] = []
    drops: Counter[str] = Counter(bad.counts)
    seen_ids: dict[str, int] = {}
    for line_number, row in rows:
        instruction = row.get(instruction_field)
        if not isinstance(instruction, str):
            bad("missing_field", f"{source}:{line_number}: missing the text field {instruction_field!r}")
            drops["missing_field"] = bad.counts["missing_field"]
            continue
        if not instruction.strip():
            drops["empty_instruction"] += 1
            continue
        if max_prompt_chars is not None and len(instruction) > max_prompt_chars:
            drops["too_long"] += 1
            continue
        prompt_id = str(row.get("id", f"{Path(source).stem}-{line_number}"))
        if prompt_id in seen_ids:
            bad("duplicate_id", f"{source}:{line_number}: duplicate id {prompt_id!r} (first on line {seen_ids[prompt_id]})")
            drops["duplicate_id"] = bad.counts["duplicate_id"]
            continue
        seen_ids[prompt_id] = line_number
        prompts.append(PromptRecord(id=prompt_id, instruction=instruction.strip(), category=str(row.get("category", ""))))
    if not prompts:
        raise PromptPoolError(f"{source}: no usable prompts (dropped: {dict(drops)})")
    return PromptPool(prompts=tuple(prompts), source=source, drops=dict(drops))
