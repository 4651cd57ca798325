"""Stop tokens, end-of-turn tokens and BOS on tokenizers of several families (`chat_tokenizers`: built in the
tests, nothing downloaded)."""

from __future__ import annotations

import pytest
import torch
from chat_tokenizers import base_like, chatml_like, llama3_like
from torch import nn
from transformers import GenerationConfig

from metareward.generation.sampler import GenerationRequest, SamplingSettings, generate
from metareward.model.chat import (
    adds_bos,
    encode_prompt,
    encode_text,
    render_prompt,
    stop_token_ids,
    turn_end_ids,
)
from metareward.model.tiny import build_tiny_model
from metareward.storage.records import PairRecord
from metareward.training.collate import PairCollator


def test_llama3_layout_stops_on_every_end_id_and_trains_the_turn_end():
    tokenizer, config = llama3_like()
    eos, eot = tokenizer.convert_tokens_to_ids(["<|end_of_text|>", "<|eot_id|>"])
    assert set(stop_token_ids(tokenizer, config)) == {eos, eot}
    assert set(stop_token_ids(tokenizer)) == {eos, eot}  # the template's turn end counts without a config too
    assert turn_end_ids(tokenizer) == (eot,)
    prompt = encode_prompt(tokenizer, render_prompt(tokenizer, "Write a short answer."))
    assert prompt[0] == tokenizer.bos_token_id and prompt.count(tokenizer.bos_token_id) == 1  # never doubled
    batch = PairCollator(tokenizer)([PairRecord("actor", "p", "Write a short answer.", "Yes.", "No.")])
    for row in (0, 1):
        completion = batch["input_ids"][row][batch["completion_mask"][row].bool()].tolist()
        assert completion[-1] == eot and eos not in completion


def test_chatml_layout_has_two_end_ids_and_no_bos():
    tokenizer, config = chatml_like()
    im_end, endoftext = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert stop_token_ids(tokenizer, config) == (im_end, endoftext)
    assert turn_end_ids(tokenizer) == (im_end,)
    assert not adds_bos(tokenizer)
    text = render_prompt(tokenizer, "Hi")
    assert encode_prompt(tokenizer, text) == encode_text(tokenizer, text)


def test_base_model_prompts_start_with_bos_once():
    tokenizer = base_like()
    assert tokenizer.chat_template is None and adds_bos(tokenizer)
    text = render_prompt(tokenizer, "Write a short answer.")
    assert text.startswith("User: ")
    ids = encode_prompt(tokenizer, text)
    assert ids == [tokenizer.bos_token_id, *encode_text(tokenizer, text)]
    assert encode_prompt(tokenizer, "<s>" + text).count(tokenizer.bos_token_id) == 1
    assert turn_end_ids(tokenizer) == (tokenizer.eos_token_id,)
    batch = PairCollator(tokenizer)([PairRecord("actor", "p", "Write a short answer.", "Yes.", "No.")])
    row = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    assert row[0] == tokenizer.bos_token_id and row[-1] == tokenizer.eos_token_id


class EmitAfter(nn.Module):
    """Wraps a model and forces token `token_id` once a row's position reaches `stop`."""

    def __init__(self, model: nn.Module, token_id: int, stop: int):
        super().__init__()
        self.model, self.token_id, self.stop = model, token_id, stop
        self.generation_config = model.generation_config

    def forward(self, position_ids, **kwargs):
        out = self.model(position_ids=position_ids, **kwargs)
        out.logits[position_ids[:, -1] >= self.stop, -1, self.token_id] = 1e4
        return out


@pytest.mark.parametrize("end", ["<|eot_id|>", "<|end_of_text|>"])
def test_generation_ends_at_the_turn_end_as_well_as_at_eos(end):
    tokenizer, config = llama3_like()
    model = build_tiny_model(tokenizer)
    model.generation_config.eos_token_id = config.eos_token_id
    prompt = render_prompt(tokenizer, "Write a short answer.")
    length = len(encode_prompt(tokenizer, prompt))
    wrapped = EmitAfter(model, tokenizer.convert_tokens_to_ids(end), length + 3)
    settings = SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=32)
    with torch.no_grad():
        (result,) = generate(wrapped, tokenizer, [GenerationRequest("q", prompt, 0)], settings, progress=False)
    assert result.finished and result.num_tokens == 4
    assert end not in result.text


@pytest.mark.slow
def test_embedded_smollm2_ends_turns_with_im_end(embedded_checkpoint):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_checkpoint)
    config = GenerationConfig.from_pretrained(embedded_checkpoint)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert turn_end_ids(tokenizer) == (im_end,) and stop_token_ids(tokenizer, config) == (im_end,)
    text = render_prompt(tokenizer, "Hi")
    assert not adds_bos(tokenizer) and encode_prompt(tokenizer, text) == encode_text(tokenizer, text)
