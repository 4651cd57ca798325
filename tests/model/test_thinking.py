"""Thinking models: the reasoning block is split from the answer exactly, the template's thinking switch is set by
`model.thinking`, and our sampler hands back the reasoning and the answer apart (a scripted model writes both)."""

from __future__ import annotations

import pytest
import torch
from chat_tokenizers import chatml_like, thinking_like
from torch import nn

from metareward.generation.sampler import GenerationRequest, SamplingSettings, generate
from metareward.model.chat import encode_prompt, encode_text, pin_thinking, reasoning_format, render_prompt
from metareward.model.loading import ModelLoadError, ModelSpec, load_model_and_tokenizer
from metareward.model.reasoning import ReasoningFormat, split_reasoning
from metareward.model.tiny import build_tiny_model

THINKS = ReasoningFormat()
OPENED = ReasoningFormat(opened_by_prompt=True)


@pytest.mark.parametrize(
    ("text", "form", "reasoning", "answer"),
    [
        ("<think>\nCount: 2.\n</think>\n\nTwo.", THINKS, "<think>\nCount: 2.\n</think>\n\n", "Two."),
        ("<think>\nCount: 2, then 3", THINKS, "<think>\nCount: 2, then 3", ""),  # cut while reasoning
        ("Plain answer. Score: 4", THINKS, "", "Plain answer. Score: 4"),  # thinking switched off
        ("Count: 2.\n</think>\nTwo.", OPENED, "Count: 2.\n</think>\n", "Two."),  # the prompt opened the block
        ("Count: 2, then", OPENED, "Count: 2, then", ""),
        ("<think>a</think>b</think> c ", THINKS, "<think>a</think>b</think> ", "c "),  # the last tag ends it
        ("<think>a</think>", None, "", "<think>a</think>"),  # a model that does not think is never split
    ],
)
def test_reasoning_and_answer_split_without_losing_a_character(text, form, reasoning, answer):
    assert split_reasoning(text, form) == (reasoning, answer)
    assert reasoning + answer == text


def test_thinking_switch_is_pinned_for_every_render():
    tokenizer = thinking_like()
    default = render_prompt(tokenizer, "Hi")
    assert default.endswith("<|im_start|>assistant\n")  # the template's default: the model thinks
    assert pin_thinking(tokenizer, "template") is None and render_prompt(tokenizer, "Hi") == default
    assert pin_thinking(tokenizer, "off") is None
    assert render_prompt(tokenizer, "Hi").endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # a caller passing the switch itself cannot undo the model setting
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True, enable_thinking=True
    )
    assert ids.endswith("</think>\n\n")
    on = thinking_like()
    assert pin_thinking(on, "on") is None and render_prompt(on, "Hi") == default


def test_a_template_without_the_switch_is_refused_in_one_sentence():
    tokenizer, _ = chatml_like()
    problem = pin_thinking(tokenizer, "off")
    assert problem and "model.thinking=off needs a chat template with an `enable_thinking` switch" in problem
    with pytest.raises(ModelLoadError, match="model.thinking=on needs a chat template"):
        load_model_and_tokenizer(ModelSpec("builtin:tiny", thinking="on"))


def test_which_models_think():
    assert reasoning_format(chatml_like()[0]) is None
    assert reasoning_format(thinking_like()) == ReasoningFormat(opened_by_prompt=False)
    assert reasoning_format(thinking_like(opened_by_prompt=True)) == ReasoningFormat(opened_by_prompt=True)


class Scripted(nn.Module):
    """Wraps a model and forces it to write `script` after a prompt of `prompt_length` tokens."""

    def __init__(self, model: nn.Module, script: list[int], prompt_length: int):
        super().__init__()
        self.model, self.script, self.start = model, script, prompt_length - 1
        self.generation_config = model.generation_config

    def forward(self, position_ids, **kwargs):
        out = self.model(position_ids=position_ids, **kwargs)
        step = int(position_ids[0, -1]) - self.start
        out.logits[:, -1, self.script[min(step, len(self.script) - 1)]] = 1e4
        return out


@pytest.mark.parametrize("opened_by_prompt", [False, True])
def test_the_sampler_hands_back_reasoning_and_answer_apart(opened_by_prompt):
    tokenizer = thinking_like(opened_by_prompt)
    prompt = render_prompt(tokenizer, "Name a number.")
    written = ("" if opened_by_prompt else "<think>\n") + "Small ones: 2.\n</think>\n\nTwo."
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model = Scripted(
        build_tiny_model(tokenizer), [*encode_text(tokenizer, written), end], len(encode_prompt(tokenizer, prompt))
    )
    settings = SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=64)
    with torch.no_grad():
        (result,) = generate(model, tokenizer, [GenerationRequest("q", prompt, 0)], settings, progress=False)
    assert result.finished and result.text == "Two."
    assert result.reasoning + result.text == written
    assert result.num_tokens == len(encode_text(tokenizer, written))  # reasoning tokens count as generated
