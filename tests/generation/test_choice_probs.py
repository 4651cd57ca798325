"""Probability score mode: the cue/choice token boundary, padding-independent probabilities, expected scores."""

import numpy as np
import pytest
import torch
from tokenizers import pre_tokenizers

from metareward.generation.choice_probs import (
    choice_distribution,
    choice_probabilities,
    choice_token_ids,
    expected_score,
    split_off_choices,
)
from metareward.model.chat import encode_text, render_prompt
from metareward.model.embedded import embedded_checkpoint_dir, is_converted
from metareward.model.tiny import build_tiny, build_tiny_tokenizer

SCORES = [str(points) for points in range(6)]
JUDGMENTS = (
    "The response is relevant. Score: ",
    "The response is relevant and helpful, and it explains the reasoning step by step. Score: ",
    "Short. Score: ",
    "Write a short answer. The judgment applies the rubric, so the response earns points. Score: ",
)


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = build_tiny()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a wider spread than the stock init, so the distributions are far from uniform
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.3, generator=generator)
    return model, tokenizer


def contexts_for(tokenizer, endings=JUDGMENTS):
    return [render_prompt(tokenizer, "Judge this response.") + ending for ending in endings]


def digit_splitting_tokenizer():
    """The tiny vocabulary, but digits pre-tokenized on their own as SmolLM2 does: "Score: 4" -> ..., " ", "4"."""
    tokenizer = build_tiny_tokenizer()
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    return tokenizer


def test_trailing_space_moves_into_the_choice_when_the_tokenizer_merges_it(tiny):
    _, tokenizer = tiny
    assert tokenizer.convert_ids_to_tokens(encode_text(tokenizer, "Score: 4"))[-1] == "Ġ4"
    ids = choice_token_ids(tokenizer, "Score: ", SCORES)
    assert tokenizer.convert_ids_to_tokens(ids) == ["Ġ" + s for s in SCORES]
    context, _ = split_off_choices(tokenizer, "Score: ", SCORES)
    assert tokenizer.decode(context) == "Score:"  # the space is read as part of the choice token


def test_trailing_space_stays_in_the_cue_when_the_tokenizer_splits_it():
    tokenizer = digit_splitting_tokenizer()
    assert tokenizer.convert_ids_to_tokens(encode_text(tokenizer, "Score: 4"))[-2:] == ["Ġ", "4"]
    assert tokenizer.convert_ids_to_tokens(choice_token_ids(tokenizer, "Score: ", SCORES)) == SCORES
    context, _ = split_off_choices(tokenizer, "Score: ", SCORES)
    assert tokenizer.decode(context) == "Score: "


def test_smollm2_tokenizer_splits_the_space():
    directory = embedded_checkpoint_dir()
    if not is_converted(directory):
        pytest.skip(f"no converted SmolLM2 checkpoint in {directory}")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    assert tokenizer.convert_ids_to_tokens(choice_token_ids(tokenizer, "Score: ", SCORES)) == SCORES
    assert tokenizer.convert_ids_to_tokens(choice_token_ids(tokenizer, "Winner: Judgment ", ["A", "B"])) == [
        "ĠA",
        "ĠB",
    ]


def test_winner_cue_and_leading_space_fallback(tiny):
    _, tokenizer = tiny
    ids = choice_token_ids(tokenizer, "Winner: Judgment ", ["A", "B"])
    assert tokenizer.convert_ids_to_tokens(ids) == ["ĠA", "ĠB"]
    # " 4" after "Score: " would be two spaces; the retry without the leading space finds the single token.
    assert choice_token_ids(tokenizer, "Score: ", [" 4"]) == choice_token_ids(tokenizer, "Score: ", ["4"])


def test_unusable_choices_are_refused(tiny):
    _, tokenizer = tiny
    with pytest.raises(ValueError, match="'10'.*single token"):
        choice_token_ids(tokenizer, "Score: ", ["9", "10"])
    with pytest.raises(ValueError, match="distinct tokens"):
        choice_token_ids(tokenizer, "Score: ", ["4", " 4"])


def test_probabilities_match_a_direct_unpadded_forward_pass(tiny):
    model, tokenizer = tiny
    contexts = contexts_for(tokenizer)
    result = choice_distribution(model, tokenizer, contexts, SCORES, progress=False)
    for row, context in enumerate(contexts):
        ids, choice_ids = split_off_choices(tokenizer, context, SCORES)
        with torch.no_grad():
            probs = torch.softmax(model(torch.tensor([ids])).logits[0, -1].double(), dim=-1)[choice_ids]
        assert result.mass[row] == pytest.approx(probs.sum().item(), rel=1e-5)
        np.testing.assert_allclose(result.probabilities[row], (probs / probs.sum()).numpy(), atol=1e-6)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-12)
    assert result.probabilities.shape == (len(contexts), len(SCORES))
    assert ((result.mass > 0) & (result.mass < 1)).all()


def test_batched_equals_one_context_at_a_time(tiny):
    model, tokenizer = tiny
    contexts = contexts_for(tokenizer)
    batched = choice_probabilities(model, tokenizer, contexts, SCORES, batch_size=len(contexts), progress=False)
    for row, context in enumerate(contexts):
        alone = choice_probabilities(model, tokenizer, [context], SCORES, progress=False)
        np.testing.assert_allclose(batched[row], alone[0], atol=1e-5)
    assert np.abs(batched - batched.mean(axis=0)).max() > 1e-3  # the contexts really differ


def test_contexts_over_the_limit_are_refused(tiny):
    model, tokenizer = tiny
    contexts = contexts_for(tokenizer)
    lengths = [len(split_off_choices(tokenizer, c, SCORES)[0]) for c in contexts]
    with pytest.raises(ValueError, match="longer than"):
        choice_distribution(model, tokenizer, contexts, SCORES, max_prompt_tokens=min(lengths), progress=False)


def test_training_flag_is_restored(tiny):
    model, tokenizer = tiny
    model.train()
    try:
        choice_probabilities(model, tokenizer, contexts_for(tokenizer)[:1], ["A", "B"], progress=False)
        assert model.training
    finally:
        model.eval()


def test_expected_score_by_hand():
    probabilities = np.array([[0.0, 0.0, 0.0, 0.0, 0.5, 0.5], [1 / 6] * 6, [1.0, 0, 0, 0, 0, 0]])
    np.testing.assert_allclose(expected_score(probabilities, range(6)), [4.5, 2.5, 0.0])
    with pytest.raises(ValueError, match="shape"):
        expected_score(probabilities, [0.0, 1.0])


@pytest.mark.slow
def test_smollm2_batched_equals_one_at_a_time():
    directory = embedded_checkpoint_dir()
    if not is_converted(directory):
        pytest.skip(f"no converted SmolLM2 checkpoint in {directory}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    contexts = contexts_for(tokenizer)
    result = choice_distribution(model, tokenizer, contexts, SCORES, batch_size=4, progress=False)
    for row, context in enumerate(contexts):
        alone = choice_probabilities(model, tokenizer, [context], SCORES, progress=False)
        np.testing.assert_allclose(result.probabilities[row], alone[0], atol=1e-4)
    assert (result.mass > 0.1).all()  # after "Score: " an instruct model should expect a digit
