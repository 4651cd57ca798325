"""The policy as the engine sees it: one model whose role adapters can be switched, and its tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from metareward.engine.settings import RoleSettings
from metareward.generation.choice_probs import choice_probabilities, cue_read
from metareward.generation.sampler import CueRead, Generation, GenerationRequest, generate


class RoleSwitch(Protocol):
    """Anything that lends the model with a role's adapter active (RoleAdapters)."""

    def role(self, role: str) -> AbstractContextManager[torch.nn.Module]: ...


@dataclass
class Policy:
    """Generation and choice reading for each role, with that role's adapter active."""

    switch: RoleSwitch
    tokenizer: PreTrainedTokenizerBase
    max_prompt_tokens: int = 1536
    progress: bool = True

    def generate(
        self,
        role: str,
        requests: Sequence[GenerationRequest],
        settings: RoleSettings,
        desc: str,
        cue: CueRead | None = None,
    ) -> list[Generation]:
        """With a `cue`, each generation also reads the cue's choices after its text (see `cue_read`)."""
        with self.switch.role(role) as model:
            return generate(
                model,
                self.tokenizer,
                requests,
                settings.sampling,
                batch_size=settings.batch_size,
                max_prompt_tokens=self.max_prompt_tokens,
                desc=desc,
                progress=self.progress,
                cue=cue,
            )

    def cue_read(self, cue_text: str, choices: Sequence[str]) -> CueRead:
        return cue_read(self.tokenizer, cue_text, choices)

    def choose(
        self, role: str, contexts: Sequence[str], choices: Sequence[str], batch_size: int, desc: str
    ) -> np.ndarray:
        """Probabilities over `choices` as the next token after each context: shape [len(contexts), len(choices)]."""
        if not contexts:
            return np.zeros((0, len(choices)))
        with self.switch.role(role) as model:
            result = choice_probabilities(
                model,
                self.tokenizer,
                contexts,
                choices,
                batch_size=batch_size,
                max_prompt_tokens=self.max_prompt_tokens,
                desc=desc,
                progress=self.progress,
            )
        return np.asarray(getattr(result, "probabilities", result))
