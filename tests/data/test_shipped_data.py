"""Checks on the data files shipped under data/ (plain json, no project imports)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"

CATEGORIES = {
    "writing",
    "reasoning",
    "coding",
    "math",
    "advice",
    "extraction",
    "roleplay",
    "knowledge",
    "brainstorming",
}

# file -> (id prefix, minimum rows, {field: type} required and non-empty)
FILES = {
    "prompts/seed.jsonl": ("seed", 320, {"id": str, "category": str, "instruction": str}),
    "eval/heldout.jsonl": ("eval", 110, {"id": str, "category": str, "instruction": str}),
    "judge_quality/labelled_pairs.jsonl": (
        "jq",
        64,
        {
            "id": str,
            "category": str,
            "instruction": str,
            "good": str,
            "poor": str,
            "good_score": int,
            "poor_score": int,
        },
    ),
    "eft/sample.jsonl": ("eft", 40, {"id": str, "instruction": str, "response": str, "judgment": str, "score": int}),
    "ift/sample.jsonl": ("ift", 40, {"id": str, "instruction": str, "response": str}),
}


def load(relative: str) -> list[dict]:
    path = DATA / relative
    text = path.read_text(encoding="utf-8")
    assert not text.endswith("\n\n"), f"{relative}: trailing blank line"
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        assert line.strip(), f"{relative}:{number}: blank line"
        row = json.loads(line)
        assert isinstance(row, dict), f"{relative}:{number}: not a JSON object"
        rows.append(row)
    return rows


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.mark.parametrize("relative", sorted(FILES))
def test_file_parses_with_required_fields(relative):
    prefix, minimum, fields = FILES[relative]
    rows = load(relative)
    assert len(rows) >= minimum, f"{relative}: {len(rows)} rows, expected at least {minimum}"
    for row in rows:
        for name, kind in fields.items():
            assert name in row, f"{relative}: {row.get('id')} lacks {name!r}"
            value = row[name]
            # bool is a subclass of int: reject it explicitly
            assert isinstance(value, kind) and not isinstance(value, bool), f"{relative}: {row.get('id')}.{name}"
            if kind is str:
                assert value.strip(), f"{relative}: {row.get('id')}.{name} is empty"
        assert re.fullmatch(rf"{prefix}-\d{{4}}", row["id"]), f"{relative}: bad id {row['id']!r}"
        if "category" in row:
            assert row["category"] in CATEGORIES, f"{relative}: {row['id']} has category {row['category']!r}"


@pytest.mark.parametrize("relative", sorted(FILES))
def test_ids_unique(relative):
    ids = [row["id"] for row in load(relative)]
    duplicates = [key for key, count in Counter(ids).items() if count > 1]
    assert not duplicates, f"{relative}: duplicate ids {duplicates}"


def test_seed_covers_every_category():
    counts = Counter(row["category"] for row in load("prompts/seed.jsonl"))
    for category in sorted(CATEGORIES):
        assert counts[category] >= 25, f"seed has {counts[category]} {category} prompts, expected at least 25"


def test_eval_covers_every_category():
    counts = Counter(row["category"] for row in load("eval/heldout.jsonl"))
    assert set(counts) == CATEGORIES


def test_prompt_instructions_unique_within_files():
    for relative in ("prompts/seed.jsonl", "eval/heldout.jsonl"):
        texts = [normalise(row["instruction"]) for row in load(relative)]
        repeated = [text for text, count in Counter(texts).items() if count > 1]
        assert not repeated, f"{relative}: repeated instructions {repeated[:3]}"


def test_eval_is_disjoint_from_seed():
    seed = {normalise(row["instruction"]) for row in load("prompts/seed.jsonl")}
    heldout = {normalise(row["instruction"]) for row in load("eval/heldout.jsonl")}
    shared = seed & heldout
    assert not shared, f"{len(shared)} instruction(s) appear in both seed and eval, e.g. {sorted(shared)[:2]}"


def test_labelled_pairs_are_ordered():
    for row in load("judge_quality/labelled_pairs.jsonl"):
        assert 0 <= row["poor_score"] < row["good_score"] <= 5, row["id"]
        assert normalise(row["good"]) != normalise(row["poor"]), row["id"]
        assert 40 <= len(row["good"].split()) <= 150, f"{row['id']}: good answer should be 40-150 words"
        if "failure" in row:
            assert isinstance(row["failure"], str) and row["failure"].strip(), row["id"]


def test_eft_judgments_end_in_their_score():
    for row in load("eft/sample.jsonl"):
        lines = [line for line in row["judgment"].splitlines() if line.strip()]
        match = re.fullmatch(r"Score: (\d+)", lines[-1].strip())
        assert match, f"{row['id']}: last line {lines[-1]!r} is not 'Score: N'"
        assert int(match.group(1)) == row["score"], row["id"]
        assert 0 <= row["score"] <= 5, row["id"]
        assert len(row["judgment"].split()) <= 120, f"{row['id']}: judgment is too long"


def test_eft_scores_are_mixed():
    scores = Counter(row["score"] for row in load("eft/sample.jsonl"))
    assert len(scores) >= 4, f"EFT scores should span the rubric, got {dict(scores)}"


def test_ift_responses_are_reasonable_length():
    for row in load("ift/sample.jsonl"):
        assert 30 <= len(row["response"].split()) <= 150, f"{row['id']}: response should be 30-150 words"
