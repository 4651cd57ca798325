"""`bench generate --backend vllm` stopped by SIGTERM (a scheduler's time limit, `timeout`) stops the vLLM server it
started, as a run does, and exits with 143 in one line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO_ROOT, environment, vllm_processes

VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason="vLLM is not installed in .venv-vllm: run `make setup-vllm`"),
]


def test_sigterm_while_the_vllm_benchmark_generates_stops_its_server(tmp_path: Path) -> None:
    output, error_file = tmp_path / "bench.out", tmp_path / "bench.err"
    command = [sys.executable, "-m", "metareward.bench", "generate", "--backend", "vllm", "--quick", "--threads", "2"]
    with output.open("w") as sink, error_file.open("w") as error_sink:
        process = subprocess.Popen(command, env=environment(), stdout=sink, stderr=error_sink)
    deadline = time.monotonic() + 600
    while "vllm start-up" not in output.read_text():  # the server is up and the timed requests begin
        assert process.poll() is None, error_file.read_text()[-3000:]
        assert time.monotonic() < deadline, "the benchmark's vLLM server never came up"
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    errors = error_file.read_text()
    assert process.returncode == 128 + signal.SIGTERM, errors[-3000:]
    assert "Traceback" not in errors and errors.strip().splitlines()[-1].startswith("stopped:"), errors[-3000:]
    assert not vllm_processes(), "the benchmark's vLLM server outlived it"
