"""Evaluators that compare two answers to one instruction: `prefer(instruction, a, b)` is P(answer A is better).

Three are shipped, each a component in `conf/evaluation/evaluator/` (selected by `evaluation/evaluator=<name>`): a
causal LM read by probability (`seed`: the frozen seed model M0, the policy with its adapters off, read through the
run's generation backend; `model`: any model loaded by path, in process), and `openai`: any OpenAI-compatible
chat-completions endpoint. Position bias is cancelled by the caller, which asks for both orders (see
`metrics.both_orders`). The comparison prompt is our own wording.

The contract of an evaluator class, shipped or added: it is built from its YAML file's parameters alone and cheaply
(the config check builds it once before any model loads, so weights are loaded and endpoints called at the first
comparison); the run then calls `attach(backend)` once with its generation backend, before the first comparison.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace

from torch import nn
from transformers import PreTrainedTokenizerBase

from metareward.engine.sharding import Shard
from metareward.evaluation.http import has_choices, post_json
from metareward.generation.choice_probs import choice_distribution
from metareward.generation.policy import GenerationBackend
from metareward.model.chat import render_prompt
from metareward.model.roles import SEED_JUDGE_ROLE
from metareward.schema.rules import COUNT, POSITIVE, Number, field_problems, setting

log = logging.getLogger(__name__)

COMPARISON_TEMPLATE = (
    "Two assistants answered the same request. Decide which answer serves the user better: correct, on point, "
    "complete and clearly written. Do not reward length for its own sake.\n\n"
    "Request:\n{instruction}\n\n"
    "Answer A:\n{answer_a}\n\n"
    "Answer B:\n{answer_b}\n\n"
    'Reply with one letter only: "A" if Answer A is better, "B" if Answer B is better.'
)
COMPARISON_CUE = "Better answer: Answer "
CHOICES = ("A", "B")

Comparison = tuple[str, str, str]  # (instruction, answer_a, answer_b)


class EvaluatorError(RuntimeError):
    """An evaluator could not be reached or gave an unusable reply."""


class EvaluatorSettingsError(ValueError):
    """An evaluator's parameters cannot be used; `problems` holds one sentence per problem, each starting with the
    parameter's name (the config check puts `evaluation.evaluator.` before it)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _refuse(problems: list[str]) -> None:
    """An evaluator's parameters are checked when it is built (from its YAML file's parameters, by the config check
    before any model loads): each field's rule is stated beside it."""
    if problems:
        raise EvaluatorSettingsError(problems)


def render_comparison_prompt(instruction: str, answer_a: str, answer_b: str) -> str:
    """The user message asking which of two answers is better, answered with a single letter."""
    return COMPARISON_TEMPLATE.format(
        instruction=instruction.strip(), answer_a=answer_a.strip(), answer_b=answer_b.strip()
    )


class PreferenceEvaluator:
    """P(answer A is better than answer B). Subclasses implement `prefer_many`."""

    name = "evaluator"
    unreadable = 0  # replies that gave no preference (counted as 0.5)

    def attach(self, backend: GenerationBackend) -> PreferenceEvaluator:
        """This evaluator in a run whose generation backend is `backend`: one that reads the policy (the seed model
        M0) keeps it; the others, by default, return themselves."""
        return self

    def prefer(self, instruction: str, answer_a: str, answer_b: str) -> float:
        return self.prefer_many([(instruction, answer_a, answer_b)])[0]

    def prefer_many(self, comparisons: Sequence[Comparison]) -> list[float]:
        raise NotImplementedError


@dataclass
class SharedEvaluator(PreferenceEvaluator):
    """`inner`'s comparisons shared out over the training processes: each rank asks its share and every rank gets
    every preference, so an evaluator model (or a paid API) is asked once per comparison, not once per rank. Its
    `unreadable` count is every rank's."""

    inner: PreferenceEvaluator
    shard: Shard
    unreadable: int = 0

    def __post_init__(self) -> None:
        self.name = self.inner.name

    def prefer_many(self, comparisons: Sequence[Comparison]) -> list[float]:
        before = self.inner.unreadable
        found = self.shard.each(self.inner.prefer_many, comparisons)
        self.unreadable += sum(self.shard.exchange(self.inner.unreadable - before))
        return found


def shared_evaluator(evaluator: PreferenceEvaluator, shard: Shard) -> PreferenceEvaluator:
    """`evaluator` with its comparisons shared out over `shard`'s ranks; itself for one process."""
    return evaluator if shard.world_size == 1 else SharedEvaluator(evaluator, shard)


@dataclass
class LocalModelEvaluator(PreferenceEvaluator):
    """Reads P("A") / (P("A") + P("B")) after the rendered comparison prompt and a cue: one forward per comparison.

    `model` is a factory of a context that yields the model to use, so the seed evaluator can switch the policy's
    adapters off only while it reads.
    """

    model: Callable[[], AbstractContextManager[nn.Module]]
    tokenizer: PreTrainedTokenizerBase
    batch_size: int
    max_prompt_tokens: int
    progress: bool = False
    name: str = "local"

    def prefer_many(self, comparisons: Sequence[Comparison]) -> list[float]:
        if not comparisons:
            return []
        contexts = comparison_contexts(self.tokenizer, comparisons)
        with self.model() as model:
            result = choice_distribution(
                model,
                self.tokenizer,
                contexts,
                CHOICES,
                self.batch_size,
                self.max_prompt_tokens,
                desc=f"{self.name} evaluator",
                progress=self.progress,
            )
        return [float(p) for p in result.probabilities[:, 0]]


def comparison_contexts(tokenizer: PreTrainedTokenizerBase, comparisons: Sequence[Comparison]) -> list[str]:
    """Each rendered comparison prompt followed by the cue before the letter."""
    return [render_prompt(tokenizer, render_comparison_prompt(*c)) + COMPARISON_CUE for c in comparisons]


@dataclass
class BackendEvaluator(PreferenceEvaluator):
    """P("A") / (P("A") + P("B")) after the comparison prompt and the cue, read by the run's generation backend for
    `role` (the seed model M0 as judge by default; conf/evaluation/evaluator/seed.yaml): the same read as
    `LocalModelEvaluator`, on whichever engine the run uses. It reads nothing until `attach` gives it the backend."""

    batch_size: int = setting("batch_size", COUNT)
    max_prompt_tokens: int = setting("max_prompt_tokens", COUNT)
    role: str = SEED_JUDGE_ROLE
    backend: GenerationBackend | None = None
    name: str = "seed"

    def __post_init__(self) -> None:
        _refuse(field_problems(self))

    def attach(self, backend: GenerationBackend) -> BackendEvaluator:
        return replace(self, backend=backend)

    def prefer_many(self, comparisons: Sequence[Comparison]) -> list[float]:
        if not comparisons:
            return []
        if self.backend is None:
            raise RuntimeError(f"the {self.name} evaluator reads the run's generation backend: attach(backend) first")
        contexts = comparison_contexts(self.backend.tokenizer, comparisons)
        probabilities = self.backend.choose(
            self.role, contexts, CHOICES, self.batch_size, f"{self.name} evaluator", self.max_prompt_tokens
        )
        return [float(p) for p in probabilities[:, 0]]


@contextmanager
def _fixed(model: nn.Module) -> Iterator[nn.Module]:
    yield model


@dataclass
class ModelEvaluator(PreferenceEvaluator):
    """Any local directory or hub id the project's loader accepts (`path`, in `dtype`), kept frozen and read as
    `LocalModelEvaluator` reads it (conf/evaluation/evaluator/model.yaml); loaded at the first comparison."""

    path: str | None
    dtype: str
    batch_size: int = setting("batch_size", COUNT)
    max_prompt_tokens: int = setting("max_prompt_tokens", COUNT)
    name: str = field(init=False)

    def __post_init__(self) -> None:
        unset = [] if self.path else ["path is not set: the model evaluator needs a local directory or hub id"]
        _refuse(unset + field_problems(self))
        self.name = f"model {self.path}"

    @functools.cached_property
    def reader(self) -> LocalModelEvaluator:
        from metareward.model.loading import ModelSpec, load_model_and_tokenizer

        model, tokenizer = load_model_and_tokenizer(ModelSpec(path=str(self.path), dtype=self.dtype))
        model.requires_grad_(False)
        return LocalModelEvaluator(
            lambda: _fixed(model), tokenizer, self.batch_size, self.max_prompt_tokens, name=self.name
        )

    def prefer_many(self, comparisons: Sequence[Comparison]) -> list[float]:
        return self.reader.prefer_many(comparisons) if comparisons else []


_LETTER = re.compile(r"\b([AB])\b")


def read_reply(choice: dict) -> float | None:
    """P(A) from a chat-completions choice: from the first token's top logprobs when the server sent them,
    else from the first standalone letter A or B of the text (1 or 0); None when neither gives an answer."""
    content = ((choice.get("logprobs") or {}).get("content")) or []
    if content:
        found: dict[str, float] = {}
        for entry in content[0].get("top_logprobs") or [content[0]]:
            letter = str(entry.get("token", "")).strip().strip('"').upper()
            if letter in CHOICES and letter not in found:
                found[letter] = math.exp(float(entry["logprob"]))
        if found:
            return found.get("A", 0.0) / (found.get("A", 0.0) + found.get("B", 0.0))
    match = _LETTER.search(str((choice.get("message") or {}).get("content") or ""))
    return None if match is None else float(match.group(1) == "A")


@dataclass
class OpenAIChatEvaluator(PreferenceEvaluator):
    """Any OpenAI-compatible `/chat/completions` endpoint (conf/evaluation/evaluator/openai.yaml). The API key is
    read from the environment variable named `api_key_env` at each call and never stored, logged or shown in this
    object's repr."""

    base_url: str
    model: str
    api_key_env: str
    max_tokens: int = setting("max_tokens", COUNT)
    top_logprobs: int = setting("top_logprobs", Number(int, 0, 20))  # the OpenAI API allows 0 to 20
    timeout_s: float = setting("timeout_s", POSITIVE)
    name: str = "openai"
    unreadable: int = field(default=0)

    def __post_init__(self) -> None:
        unset = []
        if not self.base_url:
            unset.append("base_url is not set: the openai evaluator needs the endpoint's address (http://host:port/v1)")
        if not self.model:
            unset.append("model is not set: the openai evaluator needs the name of the model the endpoint serves")
        _refuse(unset + field_problems(self))

    def prefer_many(self, comparisons: Sequence[Comparison]) -> list[float]:
        results = []
        for comparison in comparisons:
            value = read_reply(self._complete(render_comparison_prompt(*comparison)))
            if value is None:
                self.unreadable += 1
            results.append(0.5 if value is None else value)
        return results

    def _complete(self, message: str) -> dict:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": message}],
            "max_tokens": self.max_tokens,
            "temperature": 0.0,
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
        }
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = self.base_url.rstrip("/") + "/chat/completions"
        # Bounded retries with backoff; the key never appears in a message (evaluation.http).
        reply = post_json(url, body, headers, self.timeout_s, EvaluatorError, accept=has_choices)
        if not reply.get("choices"):
            raise EvaluatorError(f"The evaluator endpoint {url} returned no choices.")
        return reply["choices"][0]
