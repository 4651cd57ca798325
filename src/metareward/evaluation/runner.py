"""Evaluation steps that need a model but no Lightning: answer the held-out prompts, compare with the baseline in
both orders, score labelled pairs with the judge. Generation and score reads go through the run's generation backend
(`engine.policy.GenerationBackend`), as the data engine's do. The callbacks in `metareward.lightning.eval_callbacks`
wire them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from metareward.core.prompts import JudgePrompt
from metareward.core.seeding import derive_seed
from metareward.evaluation.data import EvalPrompt, LabelledPair
from metareward.evaluation.evaluators import PreferenceEvaluator
from metareward.evaluation.metrics import (
    arena_score,
    both_orders,
    judge_agreement,
    lc_win_rate,
    mean_interval,
)
from metareward.generation.choice_probs import expected_score
from metareward.generation.policy import GenerationBackend
from metareward.generation.sampler import Generation, GenerationRequest, RoleSettings, SamplingSettings
from metareward.model.chat import render_prompt
from metareward.schema.rules import COUNT, Number, setting


@dataclass(frozen=True)
class ArenaSettings:
    """The `evaluation.arena` group: a game is a tie when |P - 0.5| <= tie_margin; `confidence` intervals over
    `num_bootstrap` resamples of the prompts; `seed` is the run's."""

    tie_margin: float = setting("tie_margin", Number(float, 0, 0.5, high_open=True), default=0.05)
    num_bootstrap: int = setting("num_bootstrap", COUNT, default=200)
    confidence: float = setting("confidence", Number(float, 0, 1, low_open=True, high_open=True), default=0.95)
    seed: int = 0


def finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def answer_prompts(
    backend: GenerationBackend,
    role: str,
    prompts: Sequence[EvalPrompt],
    sampling: SamplingSettings,
    batch_size: int,
    max_prompt_tokens: int,
    seed: int,
    desc: str = "evaluation answers",
) -> list[Generation]:
    """One answer per prompt by `role` (the actor, or SEED_ROLE for M0), each request seeded from (seed, prompt id)
    so reruns answer alike; each answer knows whether it ended or hit `max_new_tokens`."""
    requests = [
        GenerationRequest(
            p.id, render_prompt(backend.tokenizer, p.instruction, p.system), derive_seed(seed, "eval", p.id)
        )
        for p in prompts
    ]
    return backend.generate(
        role, requests, RoleSettings(sampling, batch_size), desc, max_prompt_tokens=max_prompt_tokens
    )


def with_interval(name: str, values: Sequence[float], arena: ArenaSettings) -> dict[str, float | None]:
    """`name` (the mean over prompts) with `name`_ci_low and `name`_ci_high, its bootstrap interval; None for what
    is not a finite number (no prompts)."""
    interval = mean_interval(values, arena.num_bootstrap, arena.confidence, arena.seed)
    figures = {name: interval.mean, f"{name}_ci_low": interval.low, f"{name}_ci_high": interval.high}
    return {k: finite_or_none(v) for k, v in figures.items()}


def answer_figures(
    answers: Sequence[str], finished: Sequence[bool | None], arena: ArenaSettings, prefix: str = ""
) -> dict[str, float | None]:
    """Mean answer length in characters and the share of answers that ended before `max_new_tokens`, each with
    its bootstrap interval over prompts. Answers whose ending is unknown (reference answers) give no share."""
    figures = with_interval(f"{prefix}avg_length", [len(a) for a in answers], arena)
    if finished and all(f is not None for f in finished):
        figures.update(with_interval(f"{prefix}finished_share", [float(bool(f)) for f in finished], arena))
    return figures


def win_rate_report(
    prompts: Sequence[EvalPrompt],
    answers: Sequence[str],
    baseline: Sequence[str],
    evaluator: PreferenceEvaluator,
    arena: ArenaSettings,
) -> tuple[dict[str, float | None], list[dict[str, Any]]]:
    """Figures (win_rate and arena_score with their intervals, lc_win_rate) and one annotation row per prompt.

    The evaluator judges both orders; p_model_first = P(A) with the model's answer as A, p_baseline_first = P(A)
    with the baseline's answer as A, and the prompt's preference is their position-debiased mean.
    """
    forward = [(p.instruction, a, b) for p, a, b in zip(prompts, answers, baseline)]
    backward = [(p.instruction, b, a) for p, a, b in zip(prompts, answers, baseline)]
    unreadable_before = evaluator.unreadable
    probabilities = evaluator.prefer_many(forward + backward)
    first, second = probabilities[: len(forward)], probabilities[len(forward) :]
    preferences = both_orders(first, second)
    score = arena_score(first, second, arena.tie_margin, arena.num_bootstrap, arena.confidence, arena.seed)
    figures = {
        **with_interval("win_rate", 100.0 * preferences, arena),
        "lc_win_rate": lc_win_rate(preferences, [len(a) for a in answers], [len(b) for b in baseline]),
        "arena_score": score.score,
        "arena_ci_low": score.low,
        "arena_ci_high": score.high,
        "eval_prompts": float(len(prompts)),
        # share of preference mass on the first-shown answer, over both orders (0.5 = no position bias)
        "evaluator_prefers_first": float(np.mean(probabilities)) if probabilities else math.nan,
        "evaluator_unreadable": float(evaluator.unreadable - unreadable_before),
    }
    rows = [
        {
            "prompt_id": p.id,
            "instruction": p.instruction,
            "answer": a,
            "baseline": b,
            "p_model_first": x,
            "p_baseline_first": y,
            "preference": float(z),
        }
        for p, a, b, x, y, z in zip(prompts, answers, baseline, first, second, preferences)
    ]
    return {k: finite_or_none(v) for k, v in figures.items()}, rows


def judge_score_contexts(
    tokenizer: PreTrainedTokenizerBase, items: Sequence[tuple[str, str]], judge_prompt: JudgePrompt
) -> list[str]:
    """The rendered judge prompt of each (instruction, answer), followed at once by the cue "Score: "."""
    cue = judge_prompt.score_cue + " "
    return [render_prompt(tokenizer, judge_prompt.render_judge(i, a)) + cue for i, a in items]


def read_judge_scores(
    backend: GenerationBackend,
    items: Sequence[tuple[str, str]],
    judge_prompt: JudgePrompt,
    batch_size: int,
    max_prompt_tokens: int,
    role: str = "judge",
    desc: str = "judge quality",
) -> np.ndarray:
    """E[score] = sum_k k * P(k | judge prompt, "Score: ") over the prompt's scale (0..5 for the default), read with
    `role`'s weights (the judge adapter, or SEED_JUDGE_ROLE for the frozen seed judge M0), one forward pass per item.
    `judge_prompt` is the run's (`EngineSettings.judge_prompt`, handed over by the RunContext)."""
    if not items:
        return np.zeros(0)
    contexts = judge_score_contexts(backend.tokenizer, items, judge_prompt)
    choices = judge_prompt.score_choices
    probabilities = backend.choose(role, contexts, choices, batch_size, desc, max_prompt_tokens)
    return expected_score(probabilities, list(judge_prompt.score_values))


def judge_quality_report(
    pairs: Sequence[LabelledPair], good_scores: Sequence[float], poor_scores: Sequence[float], tie_tolerance: float
) -> tuple[dict[str, float | None], list[dict[str, Any]]]:
    figures: dict[str, float | None] = dict(
        judge_agreement(
            good_scores, poor_scores, [p.good_score for p in pairs], [p.poor_score for p in pairs], tie_tolerance
        )
    )
    figures["judge_good_mean"] = float(np.mean(good_scores)) if len(pairs) else None
    figures["judge_poor_mean"] = float(np.mean(poor_scores)) if len(pairs) else None
    rows = [
        {
            "pair_id": p.id,
            "good_label": p.good_score,
            "poor_label": p.poor_score,
            "good_score": float(g),
            "poor_score": float(s),
        }
        for p, g, s in zip(pairs, good_scores, poor_scores)
    ]
    return figures, rows
