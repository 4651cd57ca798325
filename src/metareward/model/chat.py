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

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase

from metareward.model.reasoning import THINK_CLOSE, THINK_OPEN, ReasoningFormat

# Stands in for an assistant message when reading what the template writes after one; no tokenizer merges it.
_ANSWER_SENTINEL = "\u2402answer\u2403"
# How a tokenizer without a chat template lays out each role's turn.
_PLAIN_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


def render_prompt(tokenizer: PreTrainedTokenizerBase, user_message: str, system: str = "") -> str:
    """The full prompt text up to where the assistant starts answering one user message (after a system prompt,
    when one is given).

    Encode the result with `encode_prompt`: the template already holds its special tokens, and BOS is added only
    where the text does not begin with it. A tokenizer without a chat template gets a plain "User:/Assistant:"
    layout.
    """
    return render_messages(tokenizer, conversation(user_message, system))


def conversation(user_message: str, system: str = "") -> list[dict[str, str]]:
    """One user turn as chat messages, after a system message when `system` is not empty."""
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": user_message}]


def render_messages(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Mapping[str, str]]) -> str:
    """The prompt text of a conversation (an optional system message, then user and assistant turns ending with a
    user turn) up to where the assistant answers next.

    A template that refuses a system role (it raises, as Gemma's does) gets the system text at the head of the first
    user turn, separated by a blank line, which is where such models are told to put it.
    """
    messages = [dict(message) for message in messages]
    if not tokenizer.chat_template:
        lines = [f"{_PLAIN_ROLES[m['role']]}: {m['content']}\n" for m in messages]
        return "".join(lines) + "Assistant: "
    try:
        return _apply_template(tokenizer, messages)
    except TemplateError:
        if not messages or messages[0]["role"] != "system":
            raise
    return _apply_template(tokenizer, system_in_first_user_turn(messages))


def system_in_first_user_turn(messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """The messages with a leading system message moved to the head of the first user turn."""
    system, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
    first_user = next(i for i, m in enumerate(rest) if m["role"] == "user")
    rest[first_user]["content"] = f"{system}\n\n{rest[first_user]['content']}"
    return rest


def accepts_system_role(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the chat template renders a system message itself (False: `render_messages` moves it into the first
    user turn). A tokenizer without a template writes a plain `System:` line."""
    if not tokenizer.chat_template:
        return True
    try:
        _apply_template(tokenizer, conversation("Hi", "Be brief."))
    except TemplateError:
        return False
    return True


def _apply_template(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


# model.thinking: template leaves the chat template's own default; on / off set its `enable_thinking` switch.
THINKING_MODES = ("template", "on", "off")
THINKING_SWITCH = "enable_thinking"


def pin_thinking(tokenizer: PreTrainedTokenizerBase, mode: str) -> str | None:
    """Set the template's thinking switch for every prompt this tokenizer renders (generation and training alike);
    returns why it cannot be set (the template has no switch), else None. `template` changes nothing.

    The switch is pinned by a Jinja assignment at the template's head, which every render then sees whatever
    keyword arguments a caller passes."""
    if mode == "template":
        return None
    template = tokenizer.chat_template
    if not isinstance(template, str) or THINKING_SWITCH not in template:
        return (
            f"model.thinking={mode} needs a chat template with an `{THINKING_SWITCH}` switch (as Qwen3's has) and "
            f"{tokenizer.name_or_path or 'this tokenizer'}'s has none; use model.thinking=template"
        )
    value = "true" if mode == "on" else "false"
    tokenizer.chat_template = f"{{%- set {THINKING_SWITCH} = {value} -%}}{template}"
    return None


def reasoning_format(tokenizer: PreTrainedTokenizerBase) -> ReasoningFormat | None:
    """How this model marks its reasoning, or None for a model that does not think (its template and vocabulary
    know no `</think>`), whose answers are never split."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    if THINK_CLOSE not in template and THINK_CLOSE not in tokenizer.added_tokens_encoder:
        return None
    opened = render_prompt(tokenizer, "Hi").rstrip().endswith(THINK_OPEN)
    return ReasoningFormat(opened_by_prompt=opened)


def padding_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id rows are padded with: the tokenizer's pad id, else its end-of-sequence id (padding is masked out, so
    any id the model knows will do)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


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


def encode_answer(tokenizer: PreTrainedTokenizerBase, text: str, finished: bool, turn_end: Sequence[int]) -> list[int]:
    """Token ids of an answer as the model wrote it after its prompt: the text (a thinking model's reasoning in
    front, where it wrote one) followed by the end-of-turn ids (`turn_end_ids`) when the answer ended by itself,
    and by nothing when it hit its token limit, so a cut-off answer never reads as complete."""
    return encode_text(tokenizer, text) + (list(turn_end) if finished else [])


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
