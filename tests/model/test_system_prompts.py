"""System prompts on chat templates that render them differently: a turn of their own (ChatML, Llama-3 headers,
the embedded SmolLM2's real template, which writes a default system turn when none is given), refused by the
template (Gemma's: the text goes at the head of the user turn), or no template (a plain `System:` line). Training
renders a pair's prompt exactly as generation did."""

from __future__ import annotations

import pytest
from chat_tokenizers import base_like, chatml_like, gemma_like, llama3_like

from metareward.model.chat import accepts_system_role, encode_prompt, render_messages, render_prompt
from metareward.storage.records import PairRecord
from metareward.training.collate import PairCollator

SYSTEM = "You answer in one sentence."
ASK = "Name a prime number."


def test_chatml_gives_the_system_prompt_its_own_turn():
    tokenizer, _ = chatml_like()
    assert accepts_system_role(tokenizer)
    assert render_prompt(tokenizer, ASK, SYSTEM) == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{ASK}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_prompt(tokenizer, ASK) == f"<|im_start|>user\n{ASK}<|im_end|>\n<|im_start|>assistant\n"


def test_llama3_headers_put_the_system_turn_after_bos():
    tokenizer, _ = llama3_like()
    text = render_prompt(tokenizer, ASK, SYSTEM)
    assert text.startswith(f"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{SYSTEM}<|eot_id|>")
    assert encode_prompt(tokenizer, text).count(tokenizer.bos_token_id) == 1


def test_a_template_without_a_system_role_gets_the_text_in_the_user_turn():
    tokenizer = gemma_like()
    assert not accepts_system_role(tokenizer)
    text = render_prompt(tokenizer, ASK, SYSTEM)
    assert text == f"<bos><start_of_turn>user\n{SYSTEM}\n\n{ASK}<end_of_turn>\n<start_of_turn>model\n"
    assert render_prompt(tokenizer, ASK) == f"<bos><start_of_turn>user\n{ASK}<end_of_turn>\n<start_of_turn>model\n"


def test_a_conversation_without_a_system_turn_still_raises_what_the_template_refuses():
    from jinja2 import TemplateError

    tokenizer = gemma_like()
    tokenizer.chat_template = "{{ raise_exception('no conversations here') }}"
    with pytest.raises(TemplateError, match="no conversations"):
        render_messages(tokenizer, [{"role": "user", "content": ASK}])


def test_no_template_writes_plain_role_lines():
    tokenizer = base_like()
    assert render_prompt(tokenizer, ASK, SYSTEM) == f"System: {SYSTEM}\nUser: {ASK}\nAssistant: "
    assert render_prompt(tokenizer, ASK) == f"User: {ASK}\nAssistant: "
    conversation = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": ASK},
    ]
    assert render_messages(tokenizer, conversation) == f"User: Hi\nAssistant: Hello.\nUser: {ASK}\nAssistant: "


@pytest.mark.parametrize("family", ["chatml", "llama3", "gemma", "base"])
def test_a_pair_trains_on_the_prompt_generation_saw(family):
    tokenizer = {"chatml": lambda: chatml_like()[0], "llama3": lambda: llama3_like()[0], "gemma": gemma_like}.get(
        family, base_like
    )()
    pair = PairRecord("actor", "p", ASK, "Two.", "Nine.", system=SYSTEM)
    batch = PairCollator(tokenizer)([pair])
    prompt_ids = batch["input_ids"][0][~batch["completion_mask"][0].bool() & batch["attention_mask"][0].bool()]
    assert prompt_ids.tolist() == encode_prompt(tokenizer, render_prompt(tokenizer, ASK, SYSTEM))


@pytest.mark.slow
def test_embedded_smollm2_template_replaces_its_default_system_turn(embedded_checkpoint):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_checkpoint)
    default, given = render_prompt(tokenizer, ASK), render_prompt(tokenizer, ASK, SYSTEM)
    assert default.startswith("<|im_start|>system\n") and SYSTEM not in default  # the template's own system turn
    assert given.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{ASK}<|im_end|>")
    assert given.count("<|im_start|>system") == 1
