"""Shared pieces of the benchmarks: timers, peak memory, the fixed input set and the final JSON line.

Every benchmark prints readable lines first and, as its LAST line, one JSON object (`emit`). Both sides of a
comparison run in the same process on the same inputs, so machine load affects them alike; `ratio` is always
ours over the anchor, higher is better.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from metareward.bench.allocator import freed_memory_kept
from metareward.core.prompts import render_judge_prompt
from metareward.engine.timing import Stopwatch, peak_rss_mb  # noqa: F401  (the benchmarks import them from here)
from metareward.storage.artifacts import read_json_lines
from metareward.storage.records import PairRecord, PromptRecord

REPO_ROOT = Path(__file__).resolve().parents[3]
SEED_PROMPTS = REPO_ROOT / "data" / "prompts" / "seed.jsonl"

# Canned answer sentences: completions are built from them deterministically, so both sides see the same text.
_SENTENCES = (
    "Start by stating the goal plainly, so the reader knows what the rest of the answer is for.",
    "A short example usually helps more than a long definition, especially for a first-time reader.",
    "Keep the steps in the order someone would actually follow them, and number them if there are more than three.",
    "Mention the one common mistake people make here, because avoiding it saves the most time.",
    "If a number matters, give it with its unit and say roughly how precise it needs to be.",
    "Close with a one-line summary that repeats the key point in different words.",
    "Where opinions differ, say so briefly and explain which view the answer follows and why.",
    "Avoid jargon unless it is defined on first use; a plain word is almost always clearer.",
    "A checklist at the end lets the reader confirm they have not skipped anything important.",
    "Be honest about limits: if the answer depends on details not given, name those details.",
)


def machine() -> dict[str, Any]:
    """Where the figures were measured: CPU model, cores torch uses, torch version, whether malloc keeps freed
    memory (`bench.allocator`)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_avg_1m": _load_average(),
        "malloc_keeps_freed_memory": freed_memory_kept(),
    }


def _load_average() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0


def say(message: str) -> None:
    print(message, flush=True)


def emit(result: dict[str, Any], as_json: bool) -> dict[str, Any]:
    """Print the figures: readable key = value lines, then (with --json) the JSON object as the last line."""
    if not as_json:
        for key, value in result.items():
            say(f"{key}: {value}")
    else:
        print(json.dumps(result, sort_keys=True), flush=True)
    sys.stdout.flush()
    return result


def load_prompts(count: int, offset: int = 0) -> list[PromptRecord]:
    """`count` seed prompts spread over the file (every k-th), the same on every run."""
    rows = read_json_lines(SEED_PROMPTS, redo=f"restore it: git checkout {SEED_PROMPTS.relative_to(REPO_ROOT)}")
    step = max(len(rows) // max(count, 1), 1)
    chosen = [rows[(offset + i * step) % len(rows)] for i in range(count)]
    return [PromptRecord(r["id"], r["instruction"], r.get("category", "")) for r in chosen]


def canned_answer(index: int, sentences: int) -> str:
    """A deterministic answer of `sentences` canned sentences (about 20 tokens each)."""
    return " ".join(_SENTENCES[(index * 3 + j) % len(_SENTENCES)] for j in range(sentences))


def synthetic_pairs(
    count: int, completion_sentences: tuple[int, int] = (5, 9), judge_pairs: bool = True
) -> list[PairRecord]:
    """Preference pairs like the engine makes: half actor pairs (instruction prompt), half judge pairs (the judge
    prompt around an answer, ~150-250 tokens); completions of ~100-200 tokens, chosen shorter than rejected."""
    low, high = completion_sentences
    pairs = []
    for i, prompt in enumerate(load_prompts(count)):
        chosen = canned_answer(i, low + i % 2)
        rejected = canned_answer(i + 1, high - i % 2)
        if judge_pairs and i % 2:
            text = render_judge_prompt(prompt.instruction, canned_answer(i + 2, 4))
            chosen = chosen + "\nScore: 4"
            rejected = rejected + "\nScore: 2"
            pairs.append(PairRecord("judge", prompt.id, text, chosen, rejected))
        else:
            pairs.append(PairRecord("actor", prompt.id, prompt.instruction, chosen, rejected))
    return pairs


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
