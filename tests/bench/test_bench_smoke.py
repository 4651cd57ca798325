"""Each benchmark runs end to end at smoke size on the tiny model and ends with one JSON line of figures."""

from __future__ import annotations

import json
import math

import pytest

from metareward.bench.__main__ import main

EXPECTED = {
    "dpo": (
        "ours_pairs_per_s",
        "anchor_pairs_per_s",
        "ours_tokens_per_s",
        "anchor_tokens_per_s",
        "ratio",
        "ratio_vs_float32_anchor",
        "peak_gflops",
        "share_of_peak",
        "share_of_peak_computed",
    ),
    "generate": (
        "ours_requests_per_s",
        "anchor_requests_per_s",
        "ours_tokens_per_s",
        "anchor_sampled_requests",
        "ratio",
        "ratio_vs_float32_anchor",
        "peak_gflops",
        "share_of_peak",
    ),
    "precision": ("judgments", "dpo_loss_difference_max"),
    "e2e": ("wall_seconds", "peak_rss_mb"),
    "scale": ("prompt_tokens", "completion_tokens"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_quick_benchmark_ends_with_json(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([name, "--quick", "--json", "--model", "builtin:tiny"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    figures = json.loads(last)
    assert figures["benchmark"] == name
    for key in EXPECTED[name]:
        assert figures[key] > 0, key
    if name == "scale":
        lora = figures["results"]["lora"]
        assert lora["step_seconds"] > 0 and lora["trainable_parameters"] > 0 and lora["model_tflops_per_step"] > 0
    if name == "precision":  # before the first update each dtype's DPO loss is log 2: policy = reference
        assert all(losses[0] == pytest.approx(math.log(2), abs=1e-6) for losses in figures["dpo_loss"].values())
    if name == "e2e":
        assert figures["phase_seconds"] and all(v >= 0 for v in figures["phase_seconds"].values())


def test_scale_benchmark_without_a_gpu_says_so_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["scale", "--json"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        (
            "error: the scale benchmark needs a CUDA GPU (an 8B model in bf16 takes 16 GB); --quick checks its code "
            "path on a tiny model anywhere"
        )
    ]


def test_lora_rate_measures_both_kinds_of_training_and_interpolates_between_rungs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from metareward.bench.lora_rate import matching_rate

    assert main(["lora-rate", "--quick", "--json", "--model", "builtin:tiny"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["benchmark"] == "lora_rate" and set(figures["full"]) == {"meta_reward_paper", "self_reward_paper"}
    assert all(math.isfinite(run["margin"]) for run in [*figures["full"].values(), *figures["lora"]])
    assert [run["lr"] for run in figures["lora"]] == [5e-6, 2e-5]
    ladder = [{"lr": 1e-5, "margin": 0.1}, {"lr": 1e-4, "margin": 1.0}, {"lr": 1e-3, "margin": 4.0}]
    assert matching_rate(ladder, 0.1) == pytest.approx(1e-5)
    assert matching_rate(ladder, math.sqrt(0.1)) == pytest.approx(math.sqrt(1e-5 * 1e-4))  # halfway in log space
    assert matching_rate(ladder, 2.0) == pytest.approx(1e-4 * 10 ** (math.log(2) / math.log(4)))
    assert matching_rate(ladder, 5.0) is None and matching_rate(ladder, 0.05) is None  # beyond the ladder


def test_the_in_flight_sweep_times_the_phases_once_per_value() -> None:
    from metareward.bench.generate import engine_settings, in_flight_sweep
    from metareward.generation.policy import Policy
    from metareward.model.adapters import AdapterSpec, RoleAdapters
    from metareward.model.tiny import build_tiny

    model, tokenizer = build_tiny()
    backend = Policy(RoleAdapters(model, AdapterSpec(r=4, alpha=8)), tokenizer, progress=False)
    settings = engine_settings(2, 2, (4, 4, 4), (4, 4, 4))
    found = in_flight_sweep(backend, settings, 1, [1, 4])
    assert list(found) == ["1", "4"] and backend.max_in_flight == 4
    assert all(run["seconds"] > 0 and run["tokens_per_s"] > 0 for run in found.values())
