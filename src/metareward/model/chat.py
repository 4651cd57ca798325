"""Turning a user message into the model's prompt text with its chat template."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase


def render_prompt(tokenizer: PreTrainedTokenizerBase, user_message: str) -> str:
    """The full prompt text up to where the assistant starts answering.

    Tokenize the result with `add_special_tokens=False`: the template already holds the special tokens.
    A tokenizer without a chat template gets a plain "User:/Assistant:" layout.
    """
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": user_message}], tokenize=False, add_generation_prompt=True
        )
    return f"User: {user_message}\nAssistant: "


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of already-rendered text, without adding special tokens a second time."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]
