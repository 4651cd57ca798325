"""Turning preference pairs into one left-padded batch: chosen rows first, then rejected rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from metareward.model.chat import encode_text, render_prompt
from metareward.records import PairRecord


class PairCollator:
    """Callable on a list of `PairRecord`s; returns the batch that `completion_logprobs` and the DPO step expect.

    Each row is prompt ids + completion ids, where the prompt is `render_prompt(tokenizer, pair.prompt)` and the
    completion is the response text followed by the eos token. The two parts are tokenized SEPARATELY and
    concatenated: tokenizing the joined text could merge characters across the boundary into a token the model
    never produced, and generation saw exactly these prompt ids followed by the tokens it sampled.

    Prompts longer than `max_prompt_tokens` keep their LAST tokens (the assistant header the answer follows);
    completions longer than `max_completion_tokens` keep their FIRST tokens and so lose the eos.

    Returned keys, B = number of pairs, row i = chosen of pair i, row B + i = rejected of pair i:
    - `input_ids` `[2B, T]` long, left-padded with the pad id (the eos id when the tokenizer has no pad token);
    - `attention_mask` `[2B, T]` long, 1 on real tokens;
    - `completion_mask` `[2B, T]` long, 1 on completion tokens, the final eos included;
    - `ref_logps` `[2B]` float32, the pairs' `ref_chosen_logp` then `ref_rejected_logp`, NaN where missing;
    - `truncated_prompts`: pairs whose prompt was cut (both rows share it); `truncated_completions`: rows cut.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, max_prompt_tokens: int = 512, max_completion_tokens: int = 512
    ) -> None:
        problems = []
        if max_prompt_tokens < 1:
            problems.append(f"max_prompt_tokens must be >= 1, got {max_prompt_tokens}")
        if max_completion_tokens < 1:
            problems.append(f"max_completion_tokens must be >= 1, got {max_completion_tokens}")
        if tokenizer.eos_token_id is None:
            problems.append("the tokenizer has no eos token to end completions with; set tokenizer.eos_token")
        if problems:
            raise ValueError("; ".join(problems) + ".")
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.max_completion_tokens = max_completion_tokens
        self.eos_id: int = tokenizer.eos_token_id
        self.pad_id: int = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def __call__(self, pairs: Sequence[PairRecord]) -> dict[str, Any]:
        if not pairs:
            raise ValueError("PairCollator got an empty list of pairs; a batch needs at least one.")
        prompts, chosen, rejected = [], [], []
        truncated_prompts = truncated_completions = 0
        for pair in pairs:
            prompt_ids = encode_text(self.tokenizer, render_prompt(self.tokenizer, pair.prompt))
            truncated_prompts += len(prompt_ids) > self.max_prompt_tokens
            prompts.append(prompt_ids[-self.max_prompt_tokens :])
            for text, rows in ((pair.chosen, chosen), (pair.rejected, rejected)):
                completion_ids = encode_text(self.tokenizer, text) + [self.eos_id]
                truncated_completions += len(completion_ids) > self.max_completion_tokens
                rows.append(completion_ids[: self.max_completion_tokens])
        batch = left_pad_rows(prompts + prompts, chosen + rejected, self.pad_id)
        refs = [pair.ref_chosen_logp for pair in pairs] + [pair.ref_rejected_logp for pair in pairs]
        batch["ref_logps"] = torch.tensor([math.nan if ref is None else ref for ref in refs], dtype=torch.float32)
        batch["truncated_prompts"] = truncated_prompts
        batch["truncated_completions"] = truncated_completions
        return batch


def left_pad_rows(prompts: list[list[int]], completions: list[list[int]], pad_id: int) -> dict[str, Tensor]:
    """Rows of prompt + completion ids, left-padded to the longest, with attention and completion masks."""
    length = max(len(prompt) + len(completion) for prompt, completion in zip(prompts, completions))
    input_ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), length), dtype=torch.long)
    completion_mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for row, (prompt, completion) in enumerate(zip(prompts, completions)):
        ids = prompt + completion
        input_ids[row, length - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, length - len(ids) :] = 1
        completion_mask[row, length - len(completion) :] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}
