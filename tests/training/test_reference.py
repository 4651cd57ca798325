"""reference_logprobs fills the pairs with exactly what completion_logprobs computes, and leaves the model as it was."""

from __future__ import annotations

import pytest
import torch

from metareward.model.logprobs import completion_logprobs, pair_logprobs
from metareward.model.tiny import build_tiny
from metareward.storage.records import PairRecord
from metareward.training.collate import PairCollator
from metareward.training.reference import reference_logprobs


@pytest.fixture(scope="module")
def tiny():
    return build_tiny(seed=0)


PAIRS = [
    PairRecord("actor", f"p{i}", f"Question number {i}: " + "why? " * i, "Because." * (i + 1), "No idea " * (5 - i))
    for i in range(5)
]


@pytest.mark.parametrize("was_training", [True, False])
def test_matches_completion_logprobs_and_restores_mode(tiny, was_training):
    model, tokenizer = tiny
    collator = PairCollator(tokenizer)
    model.train(was_training)
    try:
        scored = reference_logprobs(model, collator, PAIRS, batch_size=2, progress=False)
        assert model.training is was_training
    finally:
        model.eval()
    batch = collator(PAIRS)
    with torch.no_grad():
        expected, _ = completion_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    chosen, rejected = expected.chunk(2)
    assert [pair.prompt_id for pair in scored] == [pair.prompt_id for pair in PAIRS]
    for pair, original, c, r in zip(scored, PAIRS, chosen.tolist(), rejected.tolist()):
        assert pair.ref_chosen_logp == pytest.approx(c, abs=1e-4)
        assert pair.ref_rejected_logp == pytest.approx(r, abs=1e-4)
        assert pair.chosen == original.chosen and original.ref_chosen_logp is None  # copies, inputs untouched
    assert collator(scored)["ref_logps"].tolist() == pytest.approx(expected.tolist(), abs=1e-4)


def test_rejects_bad_batch_size(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="batch_size"):
        reference_logprobs(model, PairCollator(tokenizer), PAIRS, batch_size=0)


def test_runs_each_forward_in_the_given_precision_context(tiny):
    """With the bf16-mixed plugin's context the values are the autocast ones (what the DPO step computes under that
    precision), not the float32 ones the model gives without it."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    model, tokenizer = tiny
    collator = PairCollator(tokenizer)
    plugin = MixedPrecision("bf16-mixed", "cpu")
    scored = reference_logprobs(
        model, collator, PAIRS, batch_size=len(PAIRS), progress=False, context=plugin.forward_context
    )
    plain = reference_logprobs(model, collator, PAIRS, batch_size=len(PAIRS), progress=False)
    batch = collator(PAIRS)
    with torch.no_grad(), plugin.forward_context():
        expected, _ = pair_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    got = collator(scored)["ref_logps"]
    assert got.tolist() == pytest.approx(expected.tolist(), abs=1e-5)
    assert (got - collator(plain)["ref_logps"]).abs().max() > 1e-3  # the context changed the arithmetic
