"""IFT and EFT rows as supervised examples: (user message, target completion).

- IFT row `{"instruction", "response"}` -> (instruction, response): the actor role.
- EFT row `{"instruction", "response", "judgment", "score"}` -> (judge_prompt.render_judge(instruction, response),
  judgment): the judge role, with exactly the prompt the judge sees during the loop (the run's `judge/prompt`). A
  judgment without a readable `Score: N` line gets `Score: <score>` appended, so the model always learns to end with
  one.

The Self-Rewarding paper keeps only EFT examples whose scores agree with human rankings (Sec. 3.1). The shipped
sample has no rankings; a user file may carry the optional boolean field `agrees_with_ranking`, and rows where it
is false are dropped and counted as `disagrees_with_ranking`. Rows whose `score` is not on the prompt's scale ([0, 5]
for the default prompt), or whose judgment's last `Score:` line says something else, are dropped as `bad_score` /
`score_mismatch`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from metareward.core.prompts import ADDITIVE_FIVE_POINT, JudgePrompt
from metareward.storage.datafiles import file_problem, json_objects, text_field_problem

AGREEMENT_FIELD = "agrees_with_ranking"
KINDS = ("ift", "eft")


class SFTDataError(ValueError):
    """An IFT/EFT file cannot be used; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class SFTExample:
    """`prompt` is the user message (the chat template is applied when batching); `completion` the target text."""

    prompt: str
    completion: str
    kind: str


@dataclass
class SFTData:
    examples: list[SFTExample]
    drops: dict[str, int] = field(default_factory=dict)


def ift_example(row: dict) -> SFTExample:
    return SFTExample(prompt=row["instruction"].strip(), completion=row["response"].strip(), kind="ift")


def eft_example(row: dict, judge_prompt: JudgePrompt = ADDITIVE_FIVE_POINT) -> SFTExample | str:
    """The judge example for one EFT row, or the reason it is dropped. The run passes its judge prompt; the default
    one serves callers without a config."""
    if row.get(AGREEMENT_FIELD) is False:
        return "disagrees_with_ranking"
    score = row.get("score")
    low, high = judge_prompt.min_score, judge_prompt.max_score
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not low <= score <= high:
        return "bad_score"
    judgment = row["judgment"].strip()
    written = judge_prompt.parse_score(judgment)
    if written is None:
        judgment = f"{judgment}\n{judge_prompt.score_line(score)}"
    elif written != float(score):
        return "score_mismatch"
    prompt = judge_prompt.render_judge(row["instruction"], row["response"])
    return SFTExample(prompt=prompt, completion=judgment, kind="eft")


REQUIRED = {"ift": ("instruction", "response"), "eft": ("instruction", "response", "judgment")}


def load_sft_file(path: str | Path, kind: str, judge_prompt: JudgePrompt = ADDITIVE_FIVE_POINT) -> SFTData:
    """Examples of `kind` ('ift' or 'eft') from a JSONL file; blank lines skipped, drops counted by reason. EFT rows
    become `judge_prompt`'s judge prompts."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    source = Path(path).expanduser()
    problem = file_problem(source, f"warm_start.{kind}_path", "a JSONL file")
    if problem:
        raise SFTDataError(problem)
    examples: list[SFTExample] = []
    drops: Counter[str] = Counter()
    for number, row in json_objects(source, SFTDataError):
        _check_row(source, number, row, kind)
        if any(not row[name].strip() for name in REQUIRED[kind]):
            drops["empty_field"] += 1
            continue
        example = ift_example(row) if kind == "ift" else eft_example(row, judge_prompt)
        if isinstance(example, str):
            drops[example] += 1
        else:
            examples.append(example)
    if not examples:
        raise SFTDataError(f"{source}: no usable {kind.upper()} examples (dropped: {dict(drops)})")
    return SFTData(examples=examples, drops=dict(drops))


def _check_row(source: Path, number: int, row: dict, kind: str) -> None:
    for name in REQUIRED[kind]:
        problem = text_field_problem(row, name, f"{source}:{number}")
        if problem:
            fields = ", ".join(REQUIRED[kind])
            raise SFTDataError(f"{problem} ({kind.upper()} rows need the text fields {fields})")
