"""PairCollator: row layout, masks, end-of-turn tokens, limits, and agreement with the chat helpers."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from metareward.model.chat import encode_prompt, encode_text, render_prompt
from metareward.model.tiny import build_tiny_tokenizer
from metareward.storage.records import PairRecord
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
        assert prompt_ids == encode_prompt(tokenizer, render_prompt(tokenizer, pair.prompt))
    assert batch["ref_logps"].dtype == torch.float32
    assert batch["ref_logps"][0].item() == -3.5
    assert all(math.isnan(value) for value in batch["ref_logps"][1:].tolist())


def test_rows_are_chosen_then_rejected(tokenizer):
    batch = PairCollator(tokenizer)(PAIRS)
    chosen = tokenizer.decode(_row(batch, "input_ids", 1).tolist())
    rejected = tokenizer.decode(_row(batch, "input_ids", 3).tolist())
    assert chosen.endswith("Step one." + tokenizer.eos_token)
    assert rejected.endswith("I cannot help with that." + tokenizer.eos_token)


def test_pairs_over_the_limits_are_named_and_refused_never_cut(tokenizer):
    prompt_length = len(encode_prompt(tokenizer, render_prompt(tokenizer, PAIRS[0].prompt)))
    completion_length = len(encode_text(tokenizer, PAIRS[0].chosen)) + 1
    fits = PairCollator(tokenizer, max_prompt_tokens=prompt_length, max_completion_tokens=completion_length)
    assert fits.oversize(PAIRS[0]) is None and fits(PAIRS[:1])["input_ids"].shape[0] == 2
    short_prompt = PairCollator(tokenizer, max_prompt_tokens=prompt_length - 1, max_completion_tokens=64)
    short_completion = PairCollator(tokenizer, max_prompt_tokens=64, max_completion_tokens=completion_length - 1)
    assert short_prompt.oversize(PAIRS[0]) == "prompt_too_long"
    assert short_completion.oversize(PAIRS[0]) == "completion_too_long"
    with pytest.raises(ValueError, match="dpo.max_prompt_tokens"):
        short_prompt(PAIRS[:1])


def test_unfinished_sides_get_no_end_token(tokenizer):
    cut = PairRecord("actor", "p0", "Write a short answer.", "The answer is", "No, because", chosen_finished=False)
    batch = PairCollator(tokenizer)([cut])
    chosen, rejected = (batch["input_ids"][row][batch["completion_mask"][row].bool()].tolist() for row in (0, 1))
    assert chosen == encode_text(tokenizer, "The answer is")
    assert rejected == encode_text(tokenizer, "No, because") + [tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_rejects_bad_arguments(tokenizer):
    with pytest.raises(ValueError, match="max_prompt_tokens.*max_completion_tokens"):
        PairCollator(tokenizer, max_prompt_tokens=0, max_completion_tokens=0)
    with pytest.raises(ValueError, match="empty"):
        PairCollator(tokenizer)([])


def test_soft_labels_travel_with_the_batch_only_when_a_pair_has_one(tokenizer):
    assert "pair_labels" not in PairCollator(tokenizer)(PAIRS)  # hard pairs: the plain DPO batch
    soft = [replace(PAIRS[0], label=0.7), PAIRS[1]]
    labels = PairCollator(tokenizer)(soft)["pair_labels"]
    assert labels.dtype == torch.float32 and labels.tolist() == pytest.approx([0.7, 1.0])
