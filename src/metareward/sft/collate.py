"""Batching SFT examples: left-padded prompt + completion rows with a mask on the completion tokens."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from transformers import PreTrainedTokenizerBase

from metareward.model.chat import encode_prompt, encode_text, padding_id, render_prompt, turn_end_ids
from metareward.model.logprobs import left_pad_rows
from metareward.schema.rules import COUNT
from metareward.sft.formatting import SFTExample


class SFTCollator:
    """Callable on a list of `SFTExample`s; returns `input_ids`, `attention_mask`, `completion_mask` `[B, T]` long.

    As in `PairCollator`, the rendered prompt (`encode_prompt`: BOS where the model uses one) and the completion
    followed by the chat template's end-of-turn token are tokenized separately and joined, and rows are LEFT-padded
    (what `completion_logprobs` needs). Nothing is cut: `oversize` names the limit an example passes, and the warm
    start drops (and counts) such examples before training.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, max_prompt_tokens: int = 768, max_completion_tokens: int = 256
    ):
        if not (COUNT.holds(max_prompt_tokens) and COUNT.holds(max_completion_tokens)):
            raise ValueError("max_prompt_tokens and max_completion_tokens must be at least 1.")
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos token to end completions with; set tokenizer.eos_token.")
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.max_completion_tokens = max_completion_tokens
        self.turn_end: list[int] = list(turn_end_ids(tokenizer))
        self.pad_id = padding_id(tokenizer)

    def encode(self, example: SFTExample) -> tuple[list[int], list[int]]:
        prompt = encode_prompt(self.tokenizer, render_prompt(self.tokenizer, example.prompt))
        return prompt, encode_text(self.tokenizer, example.completion) + self.turn_end

    def oversize(self, example: SFTExample) -> str | None:
        """`prompt_too_long` or `completion_too_long` when the example does not fit the limits, else None."""
        prompt, completion = self.encode(example)
        if len(prompt) > self.max_prompt_tokens:
            return "prompt_too_long"
        return "completion_too_long" if len(completion) > self.max_completion_tokens else None

    def __call__(self, examples: Sequence[SFTExample]) -> dict[str, Tensor]:
        if not examples:
            raise ValueError("SFTCollator got an empty list of examples; a batch needs at least one.")
        too_long = [reason for reason in map(self.oversize, examples) if reason]
        if too_long:
            raise ValueError(
                f"{len(too_long)} SFT examples do not fit warm_start.max_prompt_tokens={self.max_prompt_tokens} / "
                f"max_completion_tokens={self.max_completion_tokens} ({too_long[0]}); drop them first (warm_start does)."
            )
        rows = [self.encode(example) for example in examples]
        return left_pad_rows([p for p, _ in rows], [c for _, c in rows], self.pad_id)
