"""Turning messages into the model's prompt tokens, and knowing which tokens end the model's turn.

Chat models end an answer with a token of their own: ChatML models (SmolLM2, Qwen2.5) write `<|im_end|>`,
Llama-3-Instruct `<|eot_id|>` although its tokenizer's eos may be `<|end_of_text|>`, Gemma `<end_of_turn>`. The
model's `generation_config` lists the ids generation should stop at. So:

- generation stops at every end id the model declares (`stop_token_ids`) and keeps them out of the text;
- a completed answer is trained followed by the token the chat template itself writes after an assistant message
  (`turn_end_ids`), so DPO teaches the model to end its turn the way its template does;
- models without a chat template (base models) get a plain "User:/Assistant:" layout, and their prompts start with
  the BOS token whenever the tokenizer itself would add one (`encode_prompt`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from transformers import PreTrainedTokenizerBase

# Stands in for an assistant message when reading what the template writes after one; no tokenizer merges it.
_ANSWER_SENTINEL = "\u2402answer\u2403"


def render_prompt(tokenizer: PreTrainedTokenizerBase, user_message: str) -> str:
    """The full prompt text up to where the assistant starts answering.

    Encode the result with `encode_prompt`: the template already holds its special tokens, and BOS is added only
    where the text does not begin with it. A tokenizer without a chat template gets a plain "User:/Assistant:"
    layout.
    """
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": user_message}], tokenize=False, add_generation_prompt=True
        )
    return f"User: {user_message}\nAssistant: "


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of a piece of text (an answer, a cue), with no special tokens added."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer itself starts an encoded text with its BOS token (Llama-2, Gemma: yes; GPT-2, Qwen: no)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    with_specials = tokenizer("a", add_special_tokens=True)["input_ids"]
    return len(with_specials) > len(encode_text(tokenizer, "a")) and with_specials[0] == bos


def encode_prompt(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of a whole rendered prompt: the text's ids, with BOS in front when the tokenizer uses one and the
    rendered text (a chat template that writes it, say) does not already begin with it."""
    ids = encode_text(tokenizer, text)
    if adds_bos(tokenizer) and ids[:1] != [tokenizer.bos_token_id]:
        ids = [tokenizer.bos_token_id, *ids]
    return ids


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, Iterable) else [int(value)]


def turn_end_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """The special token(s) the chat template writes right after an assistant message (`<|im_end|>`, `<|eot_id|>`,
    `<end_of_turn>`, `</s>`); the eos token for a tokenizer without a template or whose template writes none."""
    eos = _ids(tokenizer.eos_token_id)
    if not tokenizer.chat_template:
        return tuple(eos)
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _ANSWER_SENTINEL}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    after = rendered.split(_ANSWER_SENTINEL, 1)[1].lstrip() if _ANSWER_SENTINEL in rendered else ""
    special = set(tokenizer.all_special_ids) | {
        token_id for token_id, token in tokenizer.added_tokens_decoder.items() if token.special
    }
    leading = []
    for token_id in encode_text(tokenizer, after):
        if token_id not in special:
            break
        leading.append(token_id)
    return tuple(leading[:1]) or tuple(eos)


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, generation_config: Any = None) -> tuple[int, ...]:
    """Every id that ends an answer: the generation config's eos ids (an int or a list), the tokenizer's eos and the
    template's end-of-turn token, in that order and without repeats."""
    declared = _ids(getattr(generation_config, "eos_token_id", None))
    found = dict.fromkeys([*declared, *_ids(tokenizer.eos_token_id), *turn_end_ids(tokenizer)])
    if not found:
        raise ValueError(
            f"The tokenizer {tokenizer.name_or_path or type(tokenizer).__name__} declares no end-of-answer token "
            "(no eos token, no generation_config eos_token_id); set tokenizer.eos_token."
        )
    return tuple(found)
