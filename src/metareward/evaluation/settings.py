"""Which evaluator compares answers, checked up front, and the factory that builds it once the model exists."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from metareward.engine.policy import GenerationBackend
from metareward.evaluation.evaluators import (
    OpenAIChatEvaluator,
    PreferenceEvaluator,
    path_evaluator,
    seed_evaluator,
)


@dataclass(frozen=True)
class EvaluatorSpec:
    """kind: `seed` (the frozen seed model: the policy with its adapters off), `model` (a local directory or hub id
    given by `path`), or `openai` (an OpenAI-compatible endpoint at `base_url` serving `model`; the key is read
    from the environment variable `api_key_env`)."""

    kind: str = "seed"
    path: str | None = None
    dtype: str = "float32"
    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_tokens: int = 1
    top_logprobs: int = 5
    timeout_s: float = 60.0
    batch_size: int = 8
    max_prompt_tokens: int = 2048

    def problems(self) -> list[str]:
        found = []
        if self.kind not in BUILDERS:
            found.append(f"evaluation.evaluator.kind={self.kind!r} is not one of {sorted(BUILDERS)}")
        if self.kind == "model" and not self.path:
            found.append(
                "evaluation.evaluator.kind=model needs evaluation.evaluator.path (a local directory or hub id)"
            )
        if self.kind == "openai" and not (self.base_url and self.model):
            found.append(
                "evaluation.evaluator.kind=openai needs evaluation.evaluator.base_url and evaluation.evaluator.model"
            )
        if self.batch_size < 1 or self.max_tokens < 1:
            found.append("evaluation.evaluator.batch_size and max_tokens must be at least 1")
        return found


def _seed(spec: EvaluatorSpec, policy: GenerationBackend, tokenizer: PreTrainedTokenizerBase) -> PreferenceEvaluator:
    return seed_evaluator(policy, tokenizer, batch_size=spec.batch_size, max_prompt_tokens=spec.max_prompt_tokens)


def _model(spec: EvaluatorSpec, policy: GenerationBackend, tokenizer: PreTrainedTokenizerBase) -> PreferenceEvaluator:
    return path_evaluator(
        str(spec.path), spec.dtype, batch_size=spec.batch_size, max_prompt_tokens=spec.max_prompt_tokens
    )


def _openai(spec: EvaluatorSpec, policy: GenerationBackend, tokenizer: PreTrainedTokenizerBase) -> PreferenceEvaluator:
    return OpenAIChatEvaluator(
        str(spec.base_url), str(spec.model), spec.api_key_env, spec.max_tokens, spec.top_logprobs, spec.timeout_s
    )


BUILDERS: dict[str, Callable[[EvaluatorSpec, GenerationBackend, PreTrainedTokenizerBase], PreferenceEvaluator]] = {
    "seed": _seed,
    "model": _model,
    "openai": _openai,
}


def build_evaluator(
    spec: EvaluatorSpec, policy: GenerationBackend, tokenizer: PreTrainedTokenizerBase
) -> PreferenceEvaluator:
    """`policy` is the run's generation backend (the seed evaluator reads M0 through it); the others ignore it."""
    problems = spec.problems()
    if problems:
        raise ValueError("; ".join(problems) + ".")
    return BUILDERS[spec.kind](spec, policy, tokenizer)
