"""What bfloat16 weights change in what the method reads, on the embedded model (bench precision at a small size).

Tolerances: expected scores within 0.25 of float32's (5% of the 0-5 scale; measured: 0.10 at most over 64
judgments), at least 3 in 4 of the float32 actor pairs chosen alike (measured: 8 of 8), and DPO losses within 0.15
of float32's at every step at the study's learning rate, both falling (measured: 0.09 at most over 8 steps).
"""

from __future__ import annotations

import math

import pytest

from metareward.bench import precision

pytestmark = pytest.mark.slow


def test_bfloat16_reads_the_same_scores_and_pairs_and_trains_alike() -> None:
    figures = precision.main(
        "builtin:smollm2-135m-instruct",
        as_json=False,
        num_prompts=4,
        responses=4,
        judgments=2,
        max_new=48,
        num_pairs=8,
        batch_size=4,
        steps=6,
    )
    assert figures["judgments"] == 4 * 4 * 2 and figures["score_difference_max"] <= 0.25
    assert figures["actor_pairs_alike"] >= 0.75 * figures["actor_pairs_float32"] > 0
    assert figures["dpo_loss_difference_max"] <= 0.15
    for losses in figures["dpo_loss"].values():
        assert losses[0] == pytest.approx(math.log(2), abs=1e-6)  # policy = reference before the first update
        assert losses[-1] < losses[0] - 0.1, losses  # and each dtype learns
