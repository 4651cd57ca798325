"""IFT/EFT rows -> examples, the optional ranking-agreement filter, file errors, and the collator's masks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metareward.core.prompts import render_judge_prompt
from metareward.sft.formatting import SFTDataError, eft_example, ift_example, load_sft_file

EFT_ROW = {
    "instruction": "What is 6 times 7?",
    "response": "6 times 7 is 42.",
    "judgment": "Correct, direct and complete, but adds nothing beyond the number.\nScore: 4",
    "score": 4,
}
REPO = Path(__file__).resolve().parents[2]


def test_ift_example() -> None:
    example = ift_example({"instruction": " Say hi. ", "response": "Hi!\n"})
    assert (example.prompt, example.completion, example.kind) == ("Say hi.", "Hi!", "ift")


def test_eft_example_uses_the_loop_judge_prompt() -> None:
    example = eft_example(EFT_ROW)
    assert example.prompt == render_judge_prompt(EFT_ROW["instruction"], EFT_ROW["response"])
    assert example.completion == EFT_ROW["judgment"] and example.kind == "eft"


def test_eft_score_line_added_or_checked() -> None:
    no_line = eft_example({**EFT_ROW, "judgment": "Correct and brief."})
    assert no_line.completion == "Correct and brief.\nScore: 4"
    assert eft_example({**EFT_ROW, "score": 2}) == "score_mismatch"
    assert eft_example({**EFT_ROW, "score": 9}) == "bad_score"
    assert eft_example({**EFT_ROW, "agrees_with_ranking": False}) == "disagrees_with_ranking"
    assert not isinstance(eft_example({**EFT_ROW, "agrees_with_ranking": True}), str)


def test_load_shipped_samples() -> None:
    ift = load_sft_file(REPO / "data" / "ift" / "sample.jsonl", "ift")
    eft = load_sft_file(REPO / "data" / "eft" / "sample.jsonl", "eft")
    assert len(ift.examples) == 42 and ift.drops == {}
    assert len(eft.examples) == 43 and eft.drops == {}


def test_load_user_file_counts_drops(tmp_path: Path) -> None:
    rows = [EFT_ROW, {**EFT_ROW, "agrees_with_ranking": False}, {**EFT_ROW, "response": "  "}]
    path = tmp_path / "eft.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + "\n")
    data = load_sft_file(path, "eft")
    assert len(data.examples) == 1
    assert data.drops == {"disagrees_with_ranking": 1, "empty_field": 1}


def test_file_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(SFTDataError, match="does not exist"):
        load_sft_file(tmp_path / "nope.jsonl", "ift")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x"}\n')
    with pytest.raises(SFTDataError, match=r"bad.jsonl:1: missing the text field 'response'"):
        load_sft_file(bad, "ift")
    bad.write_text("not json\n")
    with pytest.raises(SFTDataError, match="not valid JSON"):
        load_sft_file(bad, "eft")


def test_collator_masks_only_completion_tokens() -> None:
    from metareward.model.chat import encode_text, render_prompt
    from metareward.model.tiny import build_tiny_tokenizer
    from metareward.sft.collate import SFTCollator
    from metareward.sft.formatting import SFTExample

    tokenizer = build_tiny_tokenizer()
    examples = [SFTExample("Say hi.", "Hi!", "ift"), SFTExample("Count to three, please.", "1 2 3", "ift")]
    batch = SFTCollator(tokenizer)(examples)
    for row, example in enumerate(examples):
        completion = encode_text(tokenizer, example.completion) + [tokenizer.eos_token_id]
        prompt = encode_text(tokenizer, render_prompt(tokenizer, example.prompt))
        assert batch["completion_mask"][row].sum() == len(completion)
        assert batch["attention_mask"][row].sum() == len(prompt) + len(completion)
        assert (
            batch["input_ids"][row, -len(completion) :].tolist() == completion
        )  # left padding: completion ends the row
