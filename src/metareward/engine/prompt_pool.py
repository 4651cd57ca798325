"""The prompt pool: loading it from a local file or a Hugging Face dataset, and drawing each iteration's sample."""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from metareward.core.seeding import derive_seed
from metareward.schema.rules import Number, Value, setting
from metareward.storage.chat_rows import ChatPrompt, RowProblem, chat_prompt
from metareward.storage.datafiles import file_problem, id_problem, iter_json_objects, text_field_problem
from metareward.storage.records import PromptRecord

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

    def reused(self, iteration: int, count: int) -> int:
        """How many of iteration t's `count` prompts an earlier iteration drew already (the permutation wrapped)."""
        drawn_before, size = (iteration - 1) * count, len(self.prompts)
        return sum((drawn_before + i) >= size for i in range(min(count, size)))


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


@dataclass(frozen=True)
class PoolSettings:
    """The `data` group: where the prompt pool comes from and how it is read (see `load_prompt_pool`)."""

    path: str = setting("path", Value(str))
    instruction_field: str = setting("instruction_field", Value(str), default="instruction")
    # rows without the instruction field may hold chat messages here (TRL's conversational data sets: `prompt`)
    messages_field: str = setting("messages_field", Value(str), default="messages")
    split: str = setting("split", Value(str), default="train")
    max_prompt_chars: int | None = setting("max_prompt_chars", Number(int, 1, nullable=True), default=None)
    on_bad_line: str = setting("on_bad_line", Value(str), default="fail")
    instruction_suffix: str = setting("instruction_suffix", Value(str), default="")

    def load(self) -> PromptPool:
        return load_prompt_pool(
            self.path,
            self.instruction_field,
            self.split,
            self.max_prompt_chars,
            self.on_bad_line,
            self.instruction_suffix,
            self.messages_field,
        )


def load_prompt_pool(
    path: str,
    instruction_field: str = "instruction",
    split: str = "train",
    max_prompt_chars: int | None = None,
    on_bad_line: str = "fail",
    instruction_suffix: str = "",
    messages_field: str = "messages",
) -> PromptPool:
    """The prompts of a file or dataset; `instruction_suffix` is appended to every instruction (the demo asks for
    short answers that way), so the stored prompts, the judge's view and the pairs all hold the text as asked.

    A row gives its instruction as text in `instruction_field`, or as chat messages in `messages_field` (an optional
    system message and one user turn; `storage.chat_rows`), whose system message the actor is asked with."""
    bad = _BadLines(on_bad_line)
    local = Path(path).expanduser()
    if local.suffix == ".jsonl" or local.is_dir():
        problem = file_problem(local, "data.path", "a JSONL file of prompts")
        if problem:
            raise PromptPoolError(problem)
        rows = _read_jsonl_rows(local, bad)
    else:
        rows = _read_with_datasets(path, split)
    fields = _Fields(instruction_field, messages_field)
    pool = _pool_from_rows(rows, str(path), fields, max_prompt_chars, bad)
    if not instruction_suffix:
        return pool
    asked = tuple(replace(p, instruction=p.instruction + instruction_suffix) for p in pool.prompts)
    return replace(pool, prompts=asked)


def _read_jsonl_rows(path: Path, bad: _BadLines) -> list[tuple[int, dict]]:
    rows = []
    for line_number, row in iter_json_objects(path, PromptPoolError):
        if isinstance(row, str):  # JSON, but not an object
            bad("malformed_line", row)
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
            if builder == "csv" and _csv_has_no_rows(local):
                raise PromptPoolError(f"data.path={path!r} holds a header and no rows; add a row per prompt")
            dataset = _quietly(lambda: datasets.load_dataset(builder, data_files=str(local), split="train"))
        else:
            dataset = datasets.load_dataset(path, split=split)
    except PromptPoolError:
        raise
    except Exception as error:  # noqa: BLE001 - datasets raises many types; the user needs the one sentence
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise PromptPoolError(f"could not load data.path={path!r} with datasets: {reason}") from None
    return [(index + 1, dict(row)) for index, row in enumerate(dataset)]


def _csv_has_no_rows(path: Path) -> bool:
    """Whether a CSV file holds at most a header line (datasets would answer with a puzzling error)."""
    with path.open(encoding="utf-8-sig", errors="replace") as stream:
        lines = (line for line in stream if line.strip())
        return next(lines, None) is None or next(lines, None) is None


def _quietly(load):
    """A local file loads in a blink: no progress bar for it, which would only add lines to the run's output."""
    from datasets.utils import logging as datasets_logging

    shown = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()
    try:
        return load()
    finally:
        if shown:
            datasets_logging.enable_progress_bar()


@dataclass(frozen=True)
class _Fields:
    """Where a row holds its question: text in `instruction`, or chat messages in `messages`."""

    instruction: str
    messages: str

    def read(self, row: dict, where: str) -> ChatPrompt | RowProblem:
        if self.instruction not in row and self.messages in row:
            return chat_prompt(row[self.messages], self.messages, where)
        problem = text_field_problem(row, self.instruction, where)
        if problem and "missing" in problem:
            return RowProblem("missing_field", f"{problem} (or a {self.messages!r} list of chat messages)")
        return RowProblem("wrong_type", problem) if problem else ChatPrompt(row[self.instruction])


def _pool_from_rows(
    rows: list[tuple[int, dict]], source: str, fields: _Fields, max_prompt_chars: int | None, bad: _BadLines
) -> PromptPool:
    if not rows and not bad.counts:
        raise PromptPoolError(f"{source}: holds no prompts")
    prompts: list[PromptRecord] = []
    drops: Counter[str] = Counter(bad.counts)
    seen_ids: dict[str, int] = {}
    for line_number, row in rows:
        where = f"{source}:{line_number}"
        asked = fields.read(row, where)
        problem = id_problem(row, where) or text_field_problem(row, "category", where, required=False)
        if problem and not isinstance(asked, RowProblem):
            asked = RowProblem("wrong_type", problem)
        if isinstance(asked, RowProblem):
            bad(asked.reason, asked.message)
            drops[asked.reason] = bad.counts[asked.reason]
            continue
        if not asked.instruction.strip():
            drops["empty_instruction"] += 1
            continue
        if max_prompt_chars is not None and len(asked.instruction) + len(asked.system) > max_prompt_chars:
            drops["too_long"] += 1
            continue
        prompt_id = str(row.get("id", f"{Path(source).stem}-{line_number}"))
        if prompt_id in seen_ids:
            bad(
                "duplicate_id",
                f"{source}:{line_number}: duplicate id {prompt_id!r} (first on line {seen_ids[prompt_id]})",
            )
            drops["duplicate_id"] = bad.counts["duplicate_id"]
            continue
        seen_ids[prompt_id] = line_number
        prompts.append(
            PromptRecord(prompt_id, asked.instruction.strip(), row.get("category") or "", asked.system.strip())
        )
    if not prompts:
        raise PromptPoolError(f"{source}: no usable prompts (dropped: {dict(drops)})")
    return PromptPool(prompts=tuple(prompts), source=source, drops=dict(drops))


def pool_size_problem(pool: PromptPool, prompts_per_iteration: int) -> str | None:
    """An iteration draws `prompts_per_iteration` distinct prompts, so a smaller pool cannot fill even one."""
    if len(pool.prompts) >= prompts_per_iteration:
        return None
    return (
        f"data.path={pool.source!r} holds {len(pool.prompts)} usable prompts, fewer than one iteration draws "
        f"(data.prompts_per_iteration={prompts_per_iteration}); add prompts or lower data.prompts_per_iteration"
    )
