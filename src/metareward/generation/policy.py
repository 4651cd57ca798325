"""The policy as the engine sees it: one seam, `GenerationBackend`, that every phase, evaluation and self-instruct
call goes through, and its in-process implementation on transformers, `Policy`.

A backend generates for a role (actor, judge, meta_judge, or the seed model M0 answering, `SEED_ROLE`, or judging,
`SEED_JUDGE_ROLE`) and reads choice probabilities after a cue. `Policy` runs our own sampler with the role's adapter switched on;
`metareward.generation.vllm_backend.VLLMBackend` sends the same requests to a vLLM server.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from metareward.generation.choice_probs import choice_probabilities, cue_read
from metareward.generation.sampler import (
    CueRead,
    Generation,
    GenerationRequest,
    RoleSettings,
    generate,
    inference_session,
)
from metareward.model.chat import padding_id
from metareward.model.logprobs import completion_logprobs, left_pad_rows
from metareward.model.roles import SEED_FACES

BATCH_KEYS = ("input_ids", "attention_mask", "completion_mask")


class GenerationBackend(Protocol):
    """What the data engine, evaluation and self-instruct need from a generation engine.

    `generate` continues each request's rendered prompt with the role's adapter (one seed per request; with a `cue`
    each generation also carries log p(choice) after its text + cue); `choose` returns [len(contexts), len(choices)]
    probabilities of each choice as the next token, renormalised over the choices; `cue_read` makes the cue;
    `completion_logprobs` gives, per (prompt ids, completion ids) row, log p(completion | prompt) summed over the
    completion's tokens.
    Prompts are never cut: `generate` refuses one longer than `max_prompt_tokens` (the call's own limit where it
    gives one, as evaluation does, else the backend's); `choose` refuses contexts only over a limit the call gives
    (a context is a prompt that fit, the text generated after it, and a cue).
    """

    tokenizer: PreTrainedTokenizerBase
    max_prompt_tokens: int

    def generate(
        self,
        role: str,
        requests: Sequence[GenerationRequest],
        settings: RoleSettings,
        desc: str,
        cue: CueRead | None = None,
        max_prompt_tokens: int | None = None,
    ) -> list[Generation]: ...

    def choose(
        self,
        role: str,
        contexts: Sequence[str],
        choices: Sequence[str],
        batch_size: int,
        desc: str,
        max_prompt_tokens: int | None = None,
    ) -> np.ndarray: ...

    def cue_read(self, cue_text: str, choices: Sequence[str]) -> CueRead: ...

    def completion_logprobs(
        self, role: str, rows: Sequence[tuple[Sequence[int], Sequence[int]]], batch_size: int, desc: str
    ) -> list[float]: ...

    def release(self) -> None:
        """Called before a DPO phase: give back what training needs (a vLLM engine's GPU memory); the next request
        takes it again."""
        ...

    def close(self) -> None: ...


class RoleSwitch(Protocol):
    """Anything that lends the model a role plays (RoleAdapters: its adapter active; FullWeights: the one trained
    model), and the seed model M0 as one of the trained roles (`seed(face)`: "actor" answers, "judge" judges)."""

    model: torch.nn.Module

    def role(self, role: str) -> AbstractContextManager[torch.nn.Module]: ...

    def seed(self, face: str = "actor") -> AbstractContextManager[torch.nn.Module]: ...


@dataclass
class FixedModel:
    """A RoleSwitch over a model without adapters (self-instruct's seed model, an exported full fine-tune): every
    role, the seed role included, gets it as it is."""

    model: torch.nn.Module

    @contextmanager
    def role(self, role: str) -> Iterator[torch.nn.Module]:
        yield self.model

    @contextmanager
    def seed(self, face: str = "actor") -> Iterator[torch.nn.Module]:
        yield self.model


@dataclass
class Policy:
    """The in-process backend: our batched sampler on transformers, with the role's adapter active.

    `stop_ids` are the ids that end an answer (empty: the sampler's default, `model.chat.stop_token_ids`)."""

    switch: RoleSwitch
    tokenizer: PreTrainedTokenizerBase
    max_prompt_tokens: int = 1536
    progress: bool = True
    stop_ids: tuple[int, ...] = ()

    def lend(self, role: str) -> AbstractContextManager[torch.nn.Module]:
        face = SEED_FACES.get(role)
        return self.switch.role(role) if face is None else self.switch.seed(face)

    def generate(
        self,
        role: str,
        requests: Sequence[GenerationRequest],
        settings: RoleSettings,
        desc: str,
        cue: CueRead | None = None,
        max_prompt_tokens: int | None = None,
    ) -> list[Generation]:
        """With a `cue`, each generation also reads the cue's choices after its text (see `cue_read`)."""
        with self.lend(role) as model:
            return generate(
                model,
                self.tokenizer,
                requests,
                settings.sampling,
                batch_size=settings.batch_size,
                max_prompt_tokens=max_prompt_tokens or self.max_prompt_tokens,
                desc=desc,
                progress=self.progress,
                cue=cue,
                stop_ids=self.stop_ids or None,
            )

    def cue_read(self, cue_text: str, choices: Sequence[str]) -> CueRead:
        return cue_read(self.tokenizer, cue_text, choices)

    def choose(
        self,
        role: str,
        contexts: Sequence[str],
        choices: Sequence[str],
        batch_size: int,
        desc: str,
        max_prompt_tokens: int | None = None,
    ) -> np.ndarray:
        """Probabilities over `choices` as the next token after each context: shape [len(contexts), len(choices)]."""
        if not contexts:
            return np.zeros((0, len(choices)))
        with self.lend(role) as model:
            result = choice_probabilities(
                model,
                self.tokenizer,
                contexts,
                choices,
                batch_size=batch_size,
                max_prompt_tokens=max_prompt_tokens,  # None: no limit (see GenerationBackend)
                desc=desc,
                progress=self.progress,
            )
        return np.asarray(getattr(result, "probabilities", result))

    def completion_logprobs(
        self, role: str, rows: Sequence[tuple[Sequence[int], Sequence[int]]], batch_size: int, desc: str
    ) -> list[float]:
        """Summed log p(completion | prompt) of each row under the role's weights, in batches of `batch_size` rows
        of similar length (the order of `rows` is kept in the result)."""
        order = sorted(range(len(rows)), key=lambda i: -(len(rows[i][0]) + len(rows[i][1])))
        found = [0.0] * len(rows)
        pad_id = padding_id(self.tokenizer)
        with self.lend(role) as model, inference_session(model):
            device = next(model.parameters()).device
            with tqdm(total=len(rows), desc=desc, unit="answer", disable=not self.progress) as bar:
                for start in range(0, len(order), batch_size):
                    chosen = order[start : start + batch_size]
                    batch = left_pad_rows(
                        [list(rows[i][0]) for i in chosen], [list(rows[i][1]) for i in chosen], pad_id
                    )
                    summed, _ = completion_logprobs(model, *(batch[k].to(device) for k in BATCH_KEYS))
                    for i, value in zip(chosen, summed.double().cpu().tolist()):
                        found[i] = float(value)
                    bar.update(len(chosen))
        return found

    def release(self) -> None:
        """Nothing to give back: training uses the same weights."""

    def close(self) -> None:
        """Nothing to release: the model belongs to the training module."""
