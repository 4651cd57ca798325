"""Work every rank asks for alike (the evaluations) shared out over the training processes: each rank does its share
and every rank gets all results, equal to one process doing all of it; a failed share ends every rank at once.

Two ranks run as two threads whose exchange is a barrier, as `all_gather_object` is between processes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from metareward.engine.sharding import Shard, ShardedBackend, ShareFailedError, shared_out
from metareward.evaluation.evaluators import PreferenceEvaluator, shared_evaluator
from metareward.generation.policy import Policy
from metareward.generation.sampler import GenerationRequest, RoleSettings, SamplingSettings
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.chat import render_prompt
from metareward.model.tiny import build_tiny

SAMPLING = RoleSettings(SamplingSettings(temperature=1.0, top_p=0.9, max_new_tokens=8), batch_size=4)


class Barrier:
    """An exchange between threads: each rank's value, in rank order, to every rank."""

    def __init__(self, size: int) -> None:
        self.values: list[Any] = [None] * size
        self.barrier = threading.Barrier(size, timeout=60)

    def exchange_of(self, rank: int) -> Callable[[Any], list[Any]]:
        def exchange(value: Any) -> list[Any]:
            self.values[rank] = value
            self.barrier.wait()
            gathered = list(self.values)
            self.barrier.wait()
            return gathered

        return exchange


def on_two_ranks(work: Callable[[Shard], Any]) -> list[Any]:
    """work(shard) on ranks 0 and 1 at once; each rank's result, or the exception it raised."""
    barrier, results = Barrier(2), [None, None]

    def run(rank: int) -> None:
        try:
            results[rank] = work(Shard(rank, 2, barrier.exchange_of(rank)))
        except Exception as error:  # noqa: BLE001 - the test reads it
            results[rank] = error

    threads = [threading.Thread(target=run, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a rank is still waiting"
    return results


class Counted:
    """A backend that counts the requests it was given."""

    def __init__(self, inner: Policy) -> None:
        self.inner, self.asked = inner, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(self, role: str, requests: Sequence[GenerationRequest], *args: Any, **kwargs: Any) -> Any:
        self.asked += len(requests)
        return self.inner.generate(role, requests, *args, **kwargs)


def policy() -> Policy:
    model, tokenizer = build_tiny()  # the same weights every time, as every DDP rank holds
    return Policy(RoleAdapters(model, AdapterSpec(r=4, alpha=8)), tokenizer, 512, progress=False)


def test_each_rank_makes_its_share_and_gets_what_one_process_makes() -> None:
    alone = policy()
    tokenizer = alone.tokenizer
    requests = [GenerationRequest(i, render_prompt(tokenizer, f"Question {i}?"), 100 + i) for i in range(5)]
    contexts = [f"Question {i}? Answer:" for i in range(5)]
    rows = [(tokenizer.encode(f"q{i}"), tokenizer.encode(f" a{i}")) for i in range(5)]
    expected = (
        [g.text for g in alone.generate("actor", requests, SAMPLING, "answers")],
        alone.choose("judge", contexts, ["A", "B"], 2, "reads"),
        alone.completion_logprobs("actor", rows, 2, "scores"),
    )
    backends = [Counted(policy()), Counted(policy())]

    def work(shard: Shard) -> Any:
        backend = shared_out(backends[shard.rank], shard)  # type: ignore[arg-type]
        assert isinstance(backend, ShardedBackend) and backend.tokenizer is backends[shard.rank].inner.tokenizer
        texts = [g.text for g in backend.generate("actor", requests, SAMPLING, "answers")]
        return (
            texts,
            backend.choose("judge", contexts, ["A", "B"], 2, "reads"),
            backend.completion_logprobs("actor", rows, 2, "scores"),
        )

    for texts, probabilities, logprobs in on_two_ranks(work):
        assert texts == expected[0]  # per-request seeds: the same answers wherever they were made
        np.testing.assert_allclose(probabilities, expected[1], atol=1e-6)
        np.testing.assert_allclose(logprobs, expected[2], atol=1e-5)
    assert [b.asked for b in backends] == [3, 2]  # each request made once, by one rank
    assert shared_out(alone, Shard()) is alone  # one process: the backend itself


def test_a_failed_share_ends_every_rank_at_once() -> None:
    def work(shard: Shard) -> Any:
        def answer(items: list[int]) -> list[int]:
            if shard.rank == 1:
                raise ValueError("prompt 3 is 900 tokens, over max_prompt_tokens=512")
            return items

        return shard.each(answer, [0, 1, 2, 3])

    zero, one = on_two_ranks(work)
    assert isinstance(one, ValueError)  # the rank whose share failed raises its own error
    assert isinstance(zero, ShareFailedError) and "rank 1 failed: ValueError: prompt 3 is 900 tokens" in str(zero)


class Scripted(PreferenceEvaluator):
    """Prefers answer A when it is "good"; gives no preference (0.5, counted unreadable) for "?"."""

    name = "scripted"

    def __init__(self) -> None:
        self.unreadable, self.asked = 0, 0

    def prefer_many(self, comparisons: Sequence[tuple[str, str, str]]) -> list[float]:
        self.asked += len(comparisons)
        self.unreadable += sum(a == "?" for _, a, _ in comparisons)
        return [1.0 if a == "good" else 0.5 if a == "?" else 0.0 for _, a, _ in comparisons]


def test_the_evaluators_comparisons_are_shared_out_and_its_unreadable_replies_counted_over_all_ranks() -> None:
    comparisons = [("q", a, "b") for a in ("good", "?", "bad", "?", "good")]
    evaluators = [Scripted(), Scripted()]

    def work(shard: Shard) -> Any:
        shared = shared_evaluator(evaluators[shard.rank], shard)
        return shared.prefer_many(comparisons), shared.unreadable, shared.name

    for preferences, unreadable, name in on_two_ranks(work):
        assert preferences == [1.0, 0.5, 0.0, 0.5, 1.0] and unreadable == 2 and name == "scripted"
    assert [e.asked for e in evaluators] == [3, 2]
    alone = Scripted()
    assert shared_evaluator(alone, Shard()) is alone


@pytest.mark.parametrize("count", [0, 1])
def test_fewer_items_than_ranks_leave_a_rank_without_a_share(count: int) -> None:
    results = on_two_ranks(lambda shard: shard.each(lambda items: [2 * x for x in items], list(range(count))))
    assert results == [[2 * x for x in range(count)]] * 2
