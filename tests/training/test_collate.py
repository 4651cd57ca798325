"""PairCollator: row layout, masks, truncation, and agreement with the chat helpers."""

from __future__ import annotations

import math

import pytest
import torch

from metareward.model.chat import encode_text, render_prompt
from metareward.model.tiny import build_tiny_tokenizer
from metareward.records import PairRecord
from metareward.training.collate import PairCollator


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


PAIRS = [
    PairRecord("actor", "p0", "Write a short answer.", "The answer is 4.", "No.", ref_chosen_logp=-3.5),
    PairRecord("judge", "p1", "Explain the reasoning step by step, please.", "Step one.", "I cannot help with that."),
]


def _row(batch, key, row):
    return batch[key][row][batch["attention_mask"][row].bool()]


def test_layout_masks_and_round_trip(tokenizer):
    batch = PairCollator(tokenizer)(PAIRS)
    size = len(PAIRS)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["completion_mask"].shape
    assert batch["input_ids"].shape[0] == 2 * size
    assert batch["truncated_prompts"] == 0 and batch["truncated_completions"] == 0
    texts = [pair.chosen for pair in PAIRS] + [pair.rejected for pair in PAIRS]
    for row, text in enumerate(texts):
        pair = PAIRS[row % size]
        attention, completion = batch["attention_mask"][row], batch["completion_mask"][row]
        # Left padding: the pads come first and are the pad id; the completion ends the row.
        pads = int((attention == 0).sum())
        assert attention[pads:].all() and not attention[:pads].any()
        assert (batch["input_ids"][row, :pads] == tokenizer.pad_token_id).all()
        length = int(completion.sum())
        assert completion[-length:].all() and not completion[:-length].any()
        completion_ids = batch["input_ids"][row, -length:].tolist()
        assert tokenizer.decode(completion_ids) == text + tokenizer.eos_token
        assert completion_ids[-1] == tokenizer.eos_token_id
        prompt_ids = batch["input_ids"][row, pads : batch["input_ids"].shape[1] - length].tolist()
        assert prompt_ids == encode_text(tokenizer, render_prompt(tokenizer, pair.prompt))
    assert batch["ref_logps"].dtype == torch.float32
    assert batch["ref_logps"][0].item() == -3.5
    assert all(math.isnan(value) for value in batch["ref_logps"][1:].tolist())


def test_rows_are_chosen_then_rejected(tokenizer):
    batch = PairCollator(tokenizer)(PAIRS)
    chosen = tokenizer.decode(_row(batch, "input_ids", 1).tolist())
    rejected = tokenizer.decode(_row(batch, "input_ids", 3).tolist())
    assert chosen.endswith("Step one." + tokenizer.eos_token)
    assert rejected.endswith("I cannot help with that." + tokenizer.eos_token)


def test_truncation_cuts_prompts_from_the_left_and_completions_from_the_right(tokenizer):
    full = PairCollator(tokenizer)(PAIRS)
    collator = PairCollator(tokenizer, max_prompt_tokens=6, max_completion_tokens=4)
    batch = collator(PAIRS)
    assert batch["truncated_prompts"] == 2  # both prompts are longer than 6 tokens; counted once per pair
    chosen_lengths = [len(encode_text(tokenizer, pair.chosen)) + 1 for pair in PAIRS]
    rejected_lengths = [len(encode_text(tokenizer, pair.rejected)) + 1 for pair in PAIRS]
    assert batch["truncated_completions"] == sum(length > 4 for length in chosen_lengths + rejected_lengths)
    for row in range(2 * len(PAIRS)):
        ids = _row(batch, "input_ids", row).tolist()
        completion_length = int(batch["completion_mask"][row].sum())
        assert completion_length <= 4 and len(ids) - completion_length == 6
        full_ids = _row(full, "input_ids", row).tolist()
        full_completion = int(full["completion_mask"][row].sum())
        # The prompt keeps its last tokens (the assistant header), the completion its first ones.
        assert ids[:6] == full_ids[: len(full_ids) - full_completion][-6:]
        assert ids[6:] == full_ids[len(full_ids) - full_completion :][:4]
        if full_completion > 4:  # a cut completion loses its eos
            assert tokenizer.eos_token_id not in ids[6:]


def test_rejects_bad_arguments(tokenizer):
    with pytest.raises(ValueError, match="max_prompt_tokens.*max_completion_tokens"):
        PairCollator(tokenizer, max_prompt_tokens=0, max_completion_tokens=0)
    with pytest.raises(ValueError, match="empty"):
        PairCollator(tokenizer)([])
