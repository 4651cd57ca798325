"""The OpenAI-compatible evaluator against a real loopback HTTP server that is down, slow, or answers garbage:
bounded retries with backoff, then one sentence naming the endpoint, never the key; and a recovering endpoint
is waited for."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from metareward.evaluation import http
from metareward.evaluation.evaluators import EvaluatorError, OpenAIChatEvaluator
from metareward.evaluation.http import RetryPolicy

KEY = "sk-test-4f9a1c-never-shown"
FAST = RetryPolicy(attempts=3, backoff_s=0.05, max_backoff_s=0.1)
GOOD = {"choices": [{"message": {"role": "assistant", "content": f"A (you sent {KEY})"}}]}  # an echoing server


class Endpoint:
    """A chat-completions endpoint whose behaviour a test sets: good, slow, garbage, 503, 401, or `flaky` (503 for
    the first `failures` requests, then good). It counts requests and echoes the Authorization header in garbage."""

    def __init__(self) -> None:
        self.mode, self.failures, self.requests = "good", 0, 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                endpoint.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                endpoint.answer(self)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        mode = self.mode
        if mode == "flaky":
            mode = "unavailable" if self.requests <= self.failures else "good"
        if mode == "slow":
            time.sleep(1.0)
        status, body = {
            "good": (200, json.dumps(GOOD)),
            "slow": (200, json.dumps(GOOD)),
            "garbage": (200, f"<html>proxy error for {handler.headers.get('Authorization')}</html>"),
            "no_choices": (200, json.dumps({"echo": handler.headers.get("Authorization"), "choices": []})),
            "unavailable": (503, "busy"),
            "unauthorized": (401, "bad key"),
        }[mode]
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.end_headers()
            handler.wfile.write(body.encode())
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (the slow case)
            pass

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    monkeypatch.setenv("METAREWARD_TEST_KEY", KEY)
    monkeypatch.setattr(http, "DEFAULT_RETRY", FAST)
    server = Endpoint()
    yield server
    server.close()


def evaluator(url: str, timeout_s: float = 5.0) -> OpenAIChatEvaluator:
    return OpenAIChatEvaluator(url, "judge-model", "METAREWARD_TEST_KEY", 1, 5, timeout_s)


@pytest.mark.parametrize(
    ("mode", "fault"),
    [
        ("garbage", "not JSON"),
        ("no_choices", "without the expected fields"),
        ("unavailable", "HTTP 503"),
        ("slow", "timed out"),
    ],
)
def test_a_misbehaving_endpoint_is_retried_a_bounded_number_of_times(endpoint: Endpoint, mode: str, fault: str) -> None:
    endpoint.mode = mode
    started = time.monotonic()
    with pytest.raises(EvaluatorError) as error:
        evaluator(endpoint.url, timeout_s=0.3).prefer("Say hi.", "Hi!", "No.")
    message = str(error.value)
    assert endpoint.requests == FAST.attempts, "not the bounded number of attempts"
    assert time.monotonic() - started < 10
    assert f"The evaluator endpoint {endpoint.url}/chat/completions failed 3 attempts" in message
    assert fault in message and "resume" in message and KEY not in message and "\n" not in message


def test_an_endpoint_that_is_down_is_named_after_the_bounded_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAREWARD_TEST_KEY", KEY)
    monkeypatch.setattr(http, "DEFAULT_RETRY", FAST)
    with socket.socket() as sock:  # a port nobody listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    waits: list[float] = []
    monkeypatch.setattr(http.time, "sleep", waits.append)
    with pytest.raises(EvaluatorError, match=rf"127\.0\.0\.1:{port}/v1/chat/completions failed 3 attempts.*refused"):
        evaluator(f"http://127.0.0.1:{port}/v1").prefer("Say hi.", "Hi!", "No.")
    assert waits == [0.0, 0.05, 0.1]  # exponential backoff, capped


def test_a_refusal_that_retrying_cannot_change_is_not_retried(endpoint: Endpoint) -> None:
    endpoint.mode = "unauthorized"
    with pytest.raises(EvaluatorError, match="refused the request: HTTP 401") as error:
        evaluator(endpoint.url).prefer("Say hi.", "Hi!", "No.")
    assert endpoint.requests == 1 and KEY not in str(error.value)


def test_an_endpoint_that_recovers_within_the_attempts_is_waited_for(endpoint: Endpoint) -> None:
    endpoint.mode, endpoint.failures = "flaky", 2
    assert evaluator(endpoint.url).prefer("Say hi.", "Hi!", "No.") == 1.0
    assert endpoint.requests == 3


def test_the_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(attempts=6, backoff_s=1.0, max_backoff_s=5.0)
    assert [policy.wait_before(k) for k in range(1, 7)] == [0.0, 1.0, 2.0, 4.0, 5.0, 5.0]


@pytest.mark.slow
def test_a_run_whose_endpoint_is_down_keeps_its_data_and_resumes_and_never_writes_the_key(
    endpoint: Endpoint, prompt_file, tmp_path
) -> None:
    import os
    import subprocess

    from helpers import smoke_train_command

    run_dir = tmp_path / "run"
    args = smoke_train_command(
        prompt_file,
        run_dir,
        "num_iterations=1",
        "evaluation/evaluator=openai",
        f"evaluation.evaluator.base_url={endpoint.url}",
        "evaluation.evaluator.model=judge-model",
        "evaluation.evaluator.api_key_env=METAREWARD_TEST_KEY",
        "evaluation.evaluator.timeout_s=2",
        "logger=wandb",  # offline: the wandb run is written into the run directory, and grepped with it below
    )
    env = {**os.environ, "WANDB_MODE": "offline", "METAREWARD_TEST_KEY": KEY}
    endpoint.mode = "garbage"  # echoes the key back in its page
    done = subprocess.run(args, check=False, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"error: The evaluator endpoint {endpoint.url}/chat/completions failed 4 attempts" in done.stderr
    assert "resume=true" in done.stderr and KEY not in done.stderr + done.stdout
    assert endpoint.requests == 4  # the default policy, bounded
    pairs = run_dir / "iterations" / "iter_01" / "train_pairs.jsonl"
    assert pairs.is_file(), "the iteration's data was not kept"
    kept = pairs.read_bytes()

    endpoint.mode = "good"
    done = subprocess.run([*args, "resume=true"], check=False, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert pairs.read_bytes() == kept
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["iterations"][0]["eval"]["win_rate"] is not None
    assert list((run_dir / "wandb").glob("offline-run-*")), "no wandb run was written"
    leaked = [p for p in run_dir.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert leaked == [] and KEY not in done.stderr + done.stdout
