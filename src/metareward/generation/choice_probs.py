"""Probability score mode: read a choice ("0".."5", or "A"/"B") from the next-token distribution after a cue.

Small judges rarely write a parsable `Score: N` line, so the caller appends a cue such as "Score: " to the
judge's justification and we look at which choice token the model would write next.

Cue boundary. Tokenizers split "Score: 4" differently: SmolLM2 gives "Score", ":", " ", "4" while a byte-level
BPE may give "Score", ":", " 4", merging the cue's trailing space into the choice. We therefore tokenize
`text` and `text + choice` and take their longest common token prefix as the context the model conditions on;
the rest of `text + choice` must be exactly one token, the choice's token. With the merging tokenizer the
trailing " " of the cue is thus dropped from the context and the choice token is " 4"; with SmolLM2 the
context keeps " " and the choice token is "4". Both are the tokenization the model would see had it written
the choice itself. A choice that does not give one new token is retried with its leading space toggled.
Every choice must share the same context, else the choices would be scored at different positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from metareward.generation.sampler import (
    CueRead,
    check_prompt_lengths,
    inference_session,
    length_sorted_batches,
    model_device,
    prefill,
)
from metareward.model.chat import encode_prompt, encode_text, padding_id
from metareward.schema.rules import COUNT, Number


@dataclass(frozen=True)
class ChoiceDistribution:
    """Result of `choice_distribution` for n contexts and c choices.

    probabilities: [n, c], renormalised over the choices (rows sum to 1).
    mass: [n], the probability the full-vocabulary softmax gave to the choice tokens together, before
        renormalising; a low mass means the model did not expect a choice at that point.
    """

    probabilities: np.ndarray
    mass: np.ndarray


def _new_token(
    tokenizer: PreTrainedTokenizerBase, text: str, base: list[int], choice: str, as_prompt: bool
) -> tuple[int, int] | None:
    """(common prefix length, choice token) when `text + choice` adds exactly one token after a shared prefix."""
    full = (encode_prompt if as_prompt else encode_text)(tokenizer, text + choice)
    common = 0
    while common < min(len(base), len(full)) and base[common] == full[common]:
        common += 1
    return (common, full[common]) if len(full) - common == 1 else None


def split_off_choices(
    tokenizer: PreTrainedTokenizerBase, text: str, choices: Sequence[str], as_prompt: bool = True
) -> tuple[list[int], list[int]]:
    """(context ids to condition on, one token id per choice) for `text` ending in a cue; see module docstring.

    `text` is a whole prompt (encoded with `encode_prompt`, BOS included where the model uses one) unless
    `as_prompt` is False, for a fragment such as the cue alone."""
    base = (encode_prompt if as_prompt else encode_text)(tokenizer, text)
    prefixes, token_ids = set(), []
    for choice in choices:
        toggled = choice[1:] if choice.startswith(" ") else " " + choice
        found = _new_token(tokenizer, text, base, choice, as_prompt) or _new_token(
            tokenizer, text, base, toggled, as_prompt
        )
        if found is None:
            raise ValueError(
                f"Choice {choice!r} does not become a single token after {text[-40:]!r} with tokenizer "
                f"{tokenizer.name_or_path or type(tokenizer).__name__}; use single-token choices such as '0'..'5'."
            )
        prefixes.add(found[0])
        token_ids.append(found[1])
    if len(prefixes) != 1 or len(set(token_ids)) != len(token_ids):
        raise ValueError(
            f"Choices {list(choices)} do not map to distinct tokens at one position after {text[-40:]!r} with "
            f"tokenizer {tokenizer.name_or_path or type(tokenizer).__name__}; change the cue or the choices."
        )
    context = base[: prefixes.pop()]
    if not context:
        raise ValueError(f"The context {text[-40:]!r} is empty once the choice boundary is split off.")
    return context, token_ids


def choice_token_ids(tokenizer: PreTrainedTokenizerBase, cue_text: str, choices: Sequence[str]) -> list[int]:
    """The single token id that each choice becomes right after `cue_text` (e.g. "Score: ")."""
    return split_off_choices(tokenizer, cue_text, choices, as_prompt=False)[1]


def cue_read(tokenizer: PreTrainedTokenizerBase, cue_text: str, choices: Sequence[str]) -> CueRead:
    """What `generate` feeds after a request's text to read `choices` there: a new line and `cue_text`
    (e.g. "Score: "), split from the choice tokens as above."""
    context, token_ids = split_off_choices(tokenizer, "\n" + cue_text, choices, as_prompt=False)
    return CueRead(tuple(context), tuple(token_ids))


def choice_distribution(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    contexts: Sequence[str],
    choices: Sequence[str],
    batch_size: int = 16,
    max_prompt_tokens: int | None = 2048,
    desc: str = "choice probabilities",
    progress: bool = True,
) -> ChoiceDistribution:
    """Next-token probabilities of `choices` after each context (already rendered text ending in a cue).

    One forward pass per batch of left-padded contexts, logits for the last position only. With z the logits,
    p = softmax(z) over the full vocabulary; mass = sum_i p[choice_i]; probabilities_i = p[choice_i] / mass,
    which equals a softmax over the choice logits alone. Every context is split (and checked) before any model
    work, so a bad cue or a context longer than `max_prompt_tokens` (never cut: see the sampler; None for no
    limit, where the caller built the contexts from prompts that fit) fails at once.
    """
    if not choices or not COUNT.holds(batch_size) or not Number(int, 1, nullable=True).holds(max_prompt_tokens):
        raise ValueError(
            f"Need at least one choice and batch_size, max_prompt_tokens >= 1; got {len(choices)} choices, "
            f"{batch_size} and {max_prompt_tokens}."
        )
    rows, token_ids = [], []
    for context in contexts:
        ids, row_token_ids = split_off_choices(tokenizer, context, choices)
        rows.append(ids)
        token_ids.append(row_token_ids)
    if max_prompt_tokens is not None:
        check_prompt_lengths(rows, max_prompt_tokens, desc)
    pad_id = padding_id(tokenizer)
    log_probs = np.zeros((len(contexts), len(choices)), dtype=np.float64)
    with inference_session(model), tqdm(total=len(contexts), desc=desc, disable=not progress) as bar:
        for batch in length_sorted_batches([len(row) for row in rows], batch_size):
            index = torch.tensor([token_ids[i] for i in batch], device=model_device(model))
            log_probs[batch] = _choice_log_probs(model, [rows[i] for i in batch], index, pad_id)
            bar.update(len(batch))
    return _normalise(log_probs)


def _choice_log_probs(model: nn.Module, rows: list[list[int]], index: torch.Tensor, pad_id: int) -> np.ndarray:
    """log softmax over the full vocabulary at each row's last position, taken at the choice tokens.

    The rows' common prefix (chat header, rubric) is encoded once (see `prefill`)."""
    logits = prefill(model, rows, pad_id, use_cache=False)[0]
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, index).double().cpu().numpy()


def _normalise(log_probs: np.ndarray) -> ChoiceDistribution:
    # In log space, so a context whose choice mass underflows still gets a proper distribution.
    top = log_probs.max(axis=1, keepdims=True)
    log_mass = top[:, 0] + np.log(np.exp(log_probs - top).sum(axis=1))
    probabilities = np.exp(log_probs - log_mass[:, None])
    return ChoiceDistribution(probabilities, np.exp(log_mass))


def choice_probabilities(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    contexts: Sequence[str],
    choices: Sequence[str],
    batch_size: int = 16,
    max_prompt_tokens: int | None = 2048,
    desc: str = "choice probabilities",
    progress: bool = True,
) -> np.ndarray:
    """[len(contexts), len(choices)] probabilities renormalised over the choices; see `choice_distribution`,
    which also returns the pre-renormalisation mass."""
    return choice_distribution(
        model, tokenizer, contexts, choices, batch_size, max_prompt_tokens, desc, progress
    ).probabilities


def expected_score(probabilities: np.ndarray, values: Sequence[float]) -> np.ndarray:
    """E[score] = sum_i p_i * value_i per row, e.g. values 0..5 for the judge's additive rubric."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(values):
        raise ValueError(
            f"probabilities must have shape [n, {len(values)}] to match the values, got {probabilities.shape}."
        )
    return probabilities @ np.asarray(values, dtype=np.float64)
