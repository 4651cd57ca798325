"""What bench dpo times: batches of one kind, as the trainer's steps, and the tokens each count of the peak covers."""

from __future__ import annotations

from metareward.bench.common import synthetic_pairs
from metareward.bench.dpo import batches, kind_batches_order, pair_tokens, shared_prompt_tokens
from metareward.model.tiny import build_tiny_tokenizer
from metareward.training.collate import PairCollator


def test_timed_batches_each_hold_one_kind_and_keep_every_pair():
    pairs = synthetic_pairs(8)
    assert {p.kind for p in pairs[:4]} == {"actor", "judge"}  # the pairs alternate kinds
    ordered = kind_batches_order(pairs)
    assert sorted(map(id, ordered)) == sorted(map(id, pairs))
    assert [{p.kind for p in batch} for batch in batches(ordered, 4)] == [{"actor"}, {"judge"}]
    assert [p.prompt_id for p in ordered if p.kind == "actor"] == [p.prompt_id for p in pairs if p.kind == "actor"]


def test_shared_prompt_tokens_count_each_prompt_once():
    collator = PairCollator(build_tiny_tokenizer(), 4096, 4096)
    pairs = synthetic_pairs(4)
    prompts = sum(len(collator.encode(pair)[0]) for pair in pairs)
    assert prompts > 0
    assert shared_prompt_tokens(collator, pairs) == pair_tokens(collator, pairs) - prompts
