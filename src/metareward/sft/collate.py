"""Batching SFT examples: left-padded prompt + completion rows with a mask on the completion tokens."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from transformers import PreTrainedTokenizerBase

from metareward.model.chat import encode_text, render_prompt
from metareward.sft.formatting import SFTExample
from metareward.training.collate import left_pad_rows


class SFTCollator:
    """Callable on a list of `SFTExample`s; returns `input_ids`, `attention_mask`, `completion_mask` `[B, T]` long.

    As in `PairCollator`, the rendered prompt and the completion (+ eos) are tokenized separately and joined, rows
    are LEFT-padded (what `completion_logprobs` needs), prompts keep their last `max_prompt_tokens` tokens and
    completions their first `max_completion_tokens`.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, max_prompt_tokens: int = 768, max_completion_tokens: int = 256
    ):
        if max_prompt_tokens < 1 or max_completion_tokens < 1:
            raise ValueError("max_prompt_tokens and max_completion_tokens must be at least 1.")
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos token to end completions with; set tokenizer.eos_token.")
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.max_completion_tokens = max_completion_tokens
        self.eos_id: int = tokenizer.eos_token_id
        self.pad_id: int = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def __call__(self, examples: Sequence[SFTExample]) -> dict[str, Tensor]:
        if not examples:
            raise ValueError("SFTCollator got an empty list of examples; a batch needs at least one.")
        rows = []
        for example in examples:
            prompt = encode_text(self.tokenizer, render_prompt(self.tokenizer, example.prompt))[
                -self.max_prompt_tokens :
            ]
            completion = (encode_text(self.tokenizer, example.completion) + [self.eos_id])[: self.max_completion_tokens]
            rows.append((prompt, completion))
        return left_pad_rows([p for p, _ in rows], [c for _, c in rows], self.pad_id)
