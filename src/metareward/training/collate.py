"""Turning preference pairs into one left-padded batch: chosen rows first, then rejected rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from metareward.model.chat import encode_answer, encode_prompt, padding_id, render_prompt, turn_end_ids
from metareward.model.logprobs import left_pad_rows
from metareward.schema.rules import COUNT
from metareward.storage.records import PairRecord


class PairCollator:
    """Callable on a list of `PairRecord`s; returns the batch that `completion_logprobs` and the DPO step expect.

    Each row is prompt ids + completion ids. The prompt is `render_prompt(tokenizer, pair.prompt, pair.system)` encoded with
    `encode_prompt` (BOS where the model uses one), exactly as generation saw it. A completion is the response (or
    judgment) text, after a thinking model's reasoning where it wrote one, followed by the token the chat template writes after an assistant message (`turn_end_ids`:
    `<|im_end|>`, `<|eot_id|>`, ...), or by nothing when that side hit its generation limit (`*_finished` False),
    so a cut-off answer is never taught as complete. The two parts are tokenized SEPARATELY and concatenated:
    tokenizing the joined text could merge characters across the boundary into a token the model never produced.

    Nothing is cut: a pair over `max_prompt_tokens` or `max_completion_tokens` is refused (`oversize` says which
    limit; the data engine drops and counts such pairs before they reach training).

    Returned keys, B = number of pairs, row i = chosen of pair i, row B + i = rejected of pair i:
    - `input_ids` `[2B, T]` long, left-padded with the pad id (the eos id when the tokenizer has no pad token);
    - `attention_mask` `[2B, T]` long, 1 on real tokens;
    - `completion_mask` `[2B, T]` long, 1 on completion tokens, the end-of-turn token included;
    - `ref_logps` `[2B]` float32, the pairs' `ref_chosen_logp` then `ref_rejected_logp`, NaN where missing;
    - `pair_labels` `[B]` float32, each pair's soft preference label (1 for a hard pair), only when some pair of the
      batch has one (`PairRecord.label`): a batch of hard pairs trains exactly as plain DPO.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, max_prompt_tokens: int = 512, max_completion_tokens: int = 512
    ) -> None:
        problems = []
        if not COUNT.holds(max_prompt_tokens):
            problems.append(f"max_prompt_tokens must be >= 1, got {max_prompt_tokens}")
        if not COUNT.holds(max_completion_tokens):
            problems.append(f"max_completion_tokens must be >= 1, got {max_completion_tokens}")
        if tokenizer.eos_token_id is None:
            problems.append("the tokenizer has no eos token to end completions with; set tokenizer.eos_token")
        if problems:
            raise ValueError("; ".join(problems) + ".")
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.max_completion_tokens = max_completion_tokens
        self.turn_end: list[int] = list(turn_end_ids(tokenizer))
        self.pad_id = padding_id(tokenizer)

    def encode(self, pair: PairRecord) -> tuple[list[int], list[int], list[int]]:
        """(prompt ids, chosen ids, rejected ids) of one pair, end-of-turn tokens on the finished sides."""
        prompt = encode_prompt(self.tokenizer, render_prompt(self.tokenizer, pair.prompt, pair.system))
        chosen = encode_answer(self.tokenizer, pair.chosen_reasoning + pair.chosen, pair.chosen_finished, self.turn_end)
        rejected = encode_answer(
            self.tokenizer, pair.rejected_reasoning + pair.rejected, pair.rejected_finished, self.turn_end
        )
        return prompt, chosen, rejected

    def oversize(self, pair: PairRecord) -> str | None:
        """`prompt_too_long` or `completion_too_long` when the pair does not fit the limits, else None."""
        prompt, chosen, rejected = self.encode(pair)
        if len(prompt) > self.max_prompt_tokens:
            return "prompt_too_long"
        if max(len(chosen), len(rejected)) > self.max_completion_tokens:
            return "completion_too_long"
        return None

    def __call__(self, pairs: Sequence[PairRecord]) -> dict[str, Any]:
        if not pairs:
            raise ValueError("PairCollator got an empty list of pairs; a batch needs at least one.")
        prompts, chosen, rejected = [], [], []
        for pair in pairs:
            prompt_ids, chosen_ids, rejected_ids = self.encode(pair)
            if (
                len(prompt_ids) > self.max_prompt_tokens
                or max(len(chosen_ids), len(rejected_ids)) > self.max_completion_tokens
            ):
                raise ValueError(
                    f"pair {pair.kind}/{pair.prompt_id} has {len(prompt_ids)} prompt and {len(chosen_ids)}/{len(rejected_ids)} "
                    f"completion tokens, over the limits dpo.max_prompt_tokens={self.max_prompt_tokens} / "
                    f"dpo.max_completion_tokens={self.max_completion_tokens}; it should have been dropped "
                    "when the iteration's pairs were made (redo the iteration's pairs, or raise the limits)."
                )
            prompts.append(prompt_ids)
            chosen.append(chosen_ids)
            rejected.append(rejected_ids)
        batch = left_pad_rows(prompts + prompts, chosen + rejected, self.pad_id)
        refs = [pair.ref_chosen_logp for pair in pairs] + [pair.ref_rejected_logp for pair in pairs]
        batch["ref_logps"] = torch.tensor([math.nan if ref is None else ref for ref in refs], dtype=torch.float32)
        if any(pair.label is not None for pair in pairs):
            labels = [1.0 if pair.label is None else pair.label for pair in pairs]
            batch["pair_labels"] = torch.tensor(labels, dtype=torch.float32)
        return batch
