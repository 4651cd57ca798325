"""The generation backend's config, the vLLM server's command line and the backend's pure parts, without vLLM.

Adapter versioning is checked against a stand-in HTTP server on the loopback address that records what the backend
asks of it (load and unload), over the tiny model's two adapters.
"""

from __future__ import annotations

import itertools
import json
import signal
import socket
import subprocess
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from helpers import compose
from safetensors.torch import load_file

from metareward.config.build import ConfigError, build_settings
from metareward.generation.policy import Policy
from metareward.generation.sampler import GenerationRequest, RoleSettings, SamplingSettings
from metareward.generation.spec import lora_rank_slot
from metareward.generation.vllm_backend import (
    ServedAdapters,
    ServedWeights,
    VLLMBackend,
    choice_logprobs,
    completion_body,
    completion_tokens,
    renormalised,
    weights_digest,
)
from metareward.generation.vllm_server import ServerSettings, VLLMServerError, server_command, server_environment
from metareward.generation.weights_lease import WeightsLease
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.full_weights import FullWeights
from metareward.model.precision import resolve_dtype
from metareward.model.tiny import build_tiny


def test_the_default_backend_is_hf() -> None:
    assert build_settings(compose("+experiment=smoke")).generation.backend == "hf"


def test_vllm_without_its_environment_is_refused_naming_the_setup_command(tmp_path: Path) -> None:
    missing = tmp_path / "no-venv" / "bin" / "python"
    overrides = ("+experiment=meta_reward", "generation=vllm", f"generation.python={missing}")
    with pytest.raises(ConfigError, match="make setup-vllm") as error:
        build_settings(compose(*overrides))
    assert str(error.value).count("\n") == 0  # one sentence


def test_vllm_settings_follow_the_model_and_refuse_the_in_memory_model(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text("")
    spec = build_settings(
        compose("+experiment=meta_reward", "generation=vllm", f"generation.python={python}")
    ).generation
    dtype = resolve_dtype("auto").name  # model.dtype=auto, decided for this machine once, for the server too
    assert (spec.backend, spec.model_path, spec.server.dtype) == ("vllm", "builtin:smollm2-135m-instruct", dtype)
    assert spec.server.max_lora_rank == 16 and spec.server.python == str(python)
    # Several training processes share the servers: kept running while DPO trains, serving adapters.
    shared = ("+experiment=meta_reward", "generation=vllm", f"generation.python={python}", "trainer=ddp")
    shared += ("trainer.devices=2",)
    assert build_settings(compose(*shared)).generation.while_training == "keep"
    with pytest.raises(ConfigError, match="2 training processes share them: use keep"):
        build_settings(compose(*shared, "generation.while_training=stop"))
    assert build_settings(compose(*shared, "model.finetune=full")).model.finetune == "full"  # weights leased: below
    with pytest.raises(ConfigError, match="exists only in memory"):
        build_settings(compose("+experiment=smoke", "generation=vllm", f"generation.python={python}"))
    assert [lora_rank_slot(r) for r in (1, 4, 16, 17)] == [1, 8, 16, 32]


def test_a_lone_string_where_a_list_belongs_is_refused_not_split_into_characters(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text("")
    base = ("+experiment=meta_reward", "generation=vllm", f"generation.python={python}")
    for key, value, example in (("urls", "http://h:8000/", "http://node1:8000"), ("extra_args", "--x", "--enable")):
        with pytest.raises(ConfigError, match=rf"generation.{key}='{value}' is not a list; write it as \[{example}"):
            build_settings(compose(*base, f"generation.{key}={value}"))
    spec = build_settings(compose(*base, "generation.urls=[http://h:8000/]", "generation.extra_args=[--x]")).generation
    assert spec.urls == ("http://h:8000",) and spec.server.extra_args == ("--x",)


def test_while_training_is_checked_against_the_accelerator_and_the_servers(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text("")
    base = ("+experiment=meta_reward", "generation=vllm", f"generation.python={python}")
    assert build_settings(compose(*base)).generation.while_training == "keep"
    assert build_settings(compose(*base, "generation.while_training=stop")).generation.while_training == "stop"
    with pytest.raises(ConfigError, match="while_training=sleep needs a GPU"):
        build_settings(compose(*base, "generation.while_training=sleep"))
    with pytest.raises(ConfigError, match="servers it does not own"):
        build_settings(compose(*base, "generation.while_training=stop", "generation.urls=[http://h:8000]"))
    with pytest.raises(ConfigError, match=r"while_training='nap' is not one of"):
        build_settings(compose(*base, "generation.while_training=nap"))
    sleeping = server_command("/m", ServerSettings(sleep_mode=True), 1)
    assert "--enable-sleep-mode" in sleeping and "--enable-sleep-mode" not in server_command("/m", ServerSettings(), 1)
    assert server_environment(ServerSettings(sleep_mode=True), {}, 2)["VLLM_SERVER_DEV_MODE"] == "1"


def test_server_command_and_environment() -> None:
    settings = ServerSettings(python="/v/bin/python", max_model_len=1600, kv_cache_gb=2, extra_args=("--x",))
    command = server_command("/models/m", settings, 8123)
    assert command[:3] == ["/v/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    for flag in ("--enable-lora", "--enable-prefix-caching", "--no-enable-chunked-prefill"):
        assert flag in command
    pairs = dict(itertools.pairwise(command))
    assert (pairs["--model"], pairs["--port"], pairs["--max-model-len"], pairs["--host"]) == (
        "/models/m",
        "8123",
        "1600",
        "127.0.0.1",
    )
    assert command[-1] == "--x"
    env = server_environment(settings, {"OMP_NUM_THREADS": "1", "PATH": "/bin"}, cores=2)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0-1" and env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and "OMP_NUM_THREADS" not in env
    assert "CUDA_VISIBLE_DEVICES" not in env
    assert server_environment(ServerSettings(devices="1"), {}, 8)["CUDA_VISIBLE_DEVICES"] == "1"


def test_completion_request_and_reply() -> None:
    body = completion_body("actor-v1", [1, 2, 3], SamplingSettings(0.0, 0.9, 5), seed=11, stop_ids=[2, 7])
    assert (body["temperature"], body["top_p"], body["seed"], body["stop_token_ids"]) == (0.0, 1.0, 11, [2, 7])
    assert completion_tokens({"token_ids": [5, 6, 2], "finish_reason": "stop"}, [2, 7]) == ([5, 6], True)
    assert completion_tokens({"token_ids": [5, 6, 9], "finish_reason": "length"}, [2, 7]) == ([5, 6, 9], False)
    # an end id written as the last allowed token still ends the answer when vLLM says it stopped there
    assert completion_tokens({"token_ids": [5, 7], "finish_reason": "stop"}, [2, 7]) == ([5], True)


def test_choice_log_probs_are_read_by_token_id_and_renormalised() -> None:
    reply = {"logprobs": {"top_logprobs": [{"token_id:4": -1.0, "token_id:9": -2.0, "token_id:5": -0.5}]}}
    assert choice_logprobs(reply, [4, 9]) == (-1.0, -2.0)
    with pytest.raises(VLLMServerError, match=r"\[3\]"):
        choice_logprobs(reply, [4, 3])
    probabilities = renormalised(np.array([[-1.0, -2.0], [-800.0, -801.0]]))
    expected = np.exp([-1.0, -2.0]) / np.exp([-1.0, -2.0]).sum()
    np.testing.assert_allclose(probabilities, [expected, expected])  # an underflowing row still sums to 1


class _Recorder(BaseHTTPRequestHandler):
    calls: ClassVar[list[tuple[str, dict]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append((self.path, body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"Success")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def recording_server():
    _Recorder.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.calls
    server.shutdown()


def test_each_adapter_version_is_written_and_loaded_under_a_new_name(recording_server, tmp_path: Path) -> None:
    url, calls = recording_server
    model, _ = build_tiny()
    adapters = RoleAdapters(model, AdapterSpec(r=4, alpha=8))
    served = ServedAdapters(adapters, tmp_path)
    assert served.sync([url]) == ["actor-v1", "judge-v1"]
    assert served.sync([url]) == [] and len(calls) == 2  # unchanged weights: nothing reloaded
    with torch.no_grad():
        next(p for n, p in adapters.model.named_parameters() if "lora_B.judge" in n).add_(0.1)
    assert served.sync([url]) == ["judge-v2"]
    assert calls[2:] == [
        ("/v1/load_lora_adapter", {"lora_name": "judge-v2", "lora_path": str(tmp_path / "judge-v2" / "judge")}),
        ("/v1/unload_lora_adapter", {"lora_name": "judge-v1"}),
    ]
    assert (tmp_path / "judge-v2" / "judge" / "adapter_model.safetensors").is_file()
    assert served.served_name("meta_judge") == "judge-v2" and served.served_name("actor") == "actor-v1"


def two_ranks(weights):
    """The tiny model's `weights(model)` (RoleAdapters, FullWeights) for two DDP ranks, which start alike."""
    ranks = [weights(build_tiny()[0]) for _ in (0, 1)]
    ranks[1].model.load_state_dict(ranks[0].model.state_dict())  # DDP starts every rank from rank 0's weights
    return ranks


def test_with_several_processes_rank_0_publishes_and_the_others_take_its_names(
    recording_server, tmp_path: Path
) -> None:
    # Two processes holding the same weights (as DDP ranks do): rank 0 writes and loads each version once and unloads
    # nothing (another rank may still be generating with it); rank 1 posts nothing and serves rank 0's names.
    url, calls = recording_server
    ranks = two_ranks(lambda model: RoleAdapters(model, AdapterSpec(r=4, alpha=8)))
    publisher = ServedAdapters(ranks[0], tmp_path, shared=True, publishes=True)
    follower = ServedAdapters(ranks[1], tmp_path, shared=True, publishes=False, wait_s=5.0)
    assert publisher.sync([url]) == ["actor-v1", "judge-v1"]
    assert follower.sync([url]) == [] and follower.names == publisher.names
    for adapters in ranks:  # a DPO phase moves every rank's judge alike
        with torch.no_grad():
            next(p for n, p in adapters.model.named_parameters() if "lora_B.judge" in n).add_(0.1)
    assert publisher.sync([url]) == ["judge-v2"]
    follower.sync([url])
    assert follower.served_name("judge") == "judge-v2" and follower.served_name("actor") == "actor-v1"
    assert [path for path, _ in calls] == ["/v1/load_lora_adapter"] * 3  # three versions, loaded once, none unloaded
    # M0 without a warm start: an adapter that adds nothing (LoRA B zero), so that no request goes without one.
    assert publisher.model_for("seed", [url]) == "seed-actor-v1" == follower.model_for("seed", [url])
    saved = load_file(str(tmp_path / "seed-actor-v1" / "actor" / "adapter_model.safetensors"))
    assert all(not t.any() for n, t in saved.items() if "lora_B" in n) and any(t.any() for t in saved.values())
    with torch.no_grad():  # weights rank 0 never served: rank 1 waits, then says why in one sentence
        next(p for n, p in ranks[1].model.named_parameters() if "lora_B.actor" in n).add_(0.1)
    follower.wait_s = 0.5
    with pytest.raises(VLLMServerError, match="for the training process of rank 0 to serve adapter actor"):
        follower.sync([url])


def test_with_full_fine_tuning_the_servers_weights_are_reloaded_only_when_no_other_process_holds_them(
    recording_server, tmp_path: Path
) -> None:
    # Full fine-tuning, two processes, one server holding one set of weights. Each process holds the weights its
    # requests use until they are answered; rank 0 saves each new set, rank 1 uses its copy.
    url, calls = recording_server
    ranks = two_ranks(FullWeights)
    seed = str(tmp_path / "seed")
    leases = [WeightsLease(tmp_path, rank, wait_s=5.0, poll_s=0.05) for rank in (0, 1)]
    leases[0].reset(held=seed)
    served = [
        ServedWeights(w, tmp_path, seed, weights_digest(w.seed_model), base="m", lease=lease, publishes=lease.rank == 0)
        for w, lease in zip(ranks, leases)
    ]

    def reloads() -> list[str]:
        return [body["kwargs"]["weights_path"] for path, body in calls if path == "/collective_rpc"]

    assert served[1].model_for("actor", [url]) == "m" and reloads() == []  # M0's weights: the server's own
    served[1].let_go()
    for weights in ranks:  # a DPO phase moves every rank's weights alike
        with torch.no_grad():
            next(weights.model.parameters()).add_(0.1)
    served[0].model_for("actor", [url])  # rank 0 saves the trained weights and reloads them: nobody else holds M0's
    trained = str(tmp_path / "policy-v1")
    assert reloads() == [trained] and (tmp_path / "policy-v1" / "model.safetensors").is_file()
    served[1].model_for("judge", [url])  # rank 1 takes rank 0's copy, already on the server
    assert reloads() == [trained] and served[1].saved == trained
    served[0].let_go()
    # Rank 0 asks for M0 (the baseline answers, say) while rank 1's requests still use the trained weights: it
    # waits, and the weights change only once rank 1 lets go of them.
    asked = threading.Thread(target=served[0].model_for, args=("seed", [url]))
    asked.start()
    time.sleep(0.5)
    assert asked.is_alive() and reloads() == [trained]
    served[1].let_go()
    asked.join(timeout=10)
    assert not asked.is_alive() and reloads() == [trained, seed]
    assert calls[-1] == ("/reset_prefix_cache", {})  # prefixes cached under the old weights are dropped
    # A holder whose process has ended does not block the others.
    with leases[0].locked() as state:
        state["holders"] = {"7": {"host": socket.gethostname(), "pid": _ended_pid()}}
    served[1].model_for("actor", [url])
    assert reloads() == [trained, seed, trained]
    served[1].let_go()
    with torch.no_grad():  # weights rank 0 never saved: rank 1 waits, then says why in one sentence
        next(ranks[1].model.parameters()).add_(0.1)
    leases[1].wait_s = 0.3
    with pytest.raises(VLLMServerError, match="for the training process of rank 0 to save the weights"):
        served[1].model_for("actor", [url])


def _ended_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_the_requests_of_one_prompt_go_to_one_server(tmp_path: Path) -> None:
    model, tokenizer = build_tiny()
    served = ServedAdapters(RoleAdapters(model, AdapterSpec(r=4, alpha=8)), tmp_path)
    urls = ("http://a", "http://b", "http://c")
    backend = VLLMBackend(served, tokenizer, urls, (0,), progress=False)
    prompts = [[1, 2, i, j] for i in range(10) for j in range(10)]
    chosen = [backend.server_for(p) for p in prompts]
    assert chosen == [backend.server_for(list(p)) for p in prompts]  # the same prompt, the same server, every time
    assert set(chosen) == set(urls) and max(chosen.count(u) for u in urls) < 50  # 100 prompts spread over all three


def test_the_hf_backend_satisfies_the_seam_unchanged() -> None:
    model, tokenizer = build_tiny()
    policy = Policy(RoleAdapters(model, AdapterSpec(r=4, alpha=8)), tokenizer, progress=False)
    probabilities = policy.choose("seed", ["a b c"], ["a", "b"], 2, "read")
    assert probabilities.shape == (1, 2) and np.isclose(probabilities.sum(), 1.0)
    policy.close()


def test_a_sleeping_engine_is_woken_by_the_next_request_and_its_adapters_loaded_again(
    recording_server, tmp_path: Path
) -> None:
    url, calls = recording_server
    model, tokenizer = build_tiny()
    served = ServedAdapters(RoleAdapters(model, AdapterSpec(r=4, alpha=8)), tmp_path)
    backend = VLLMBackend(served, tokenizer, (url,), (0,), progress=False, while_training="sleep")
    with backend.serving("actor") as name:
        assert name == "actor-v1"
    backend.release()
    backend.release()  # once asleep, a second release asks nothing
    assert calls[-1] == ("/sleep?level=1", {}) and sum(path.startswith("/sleep") for path, _ in calls) == 1
    del calls[:]
    with backend.serving("judge") as name:
        assert name == "judge-v2"  # woken first, then every adapter under a new name
    assert [path for path, _ in calls] == ["/wake_up"] + ["/v1/load_lora_adapter", "/v1/unload_lora_adapter"] * 2
    assert calls[1][1]["lora_name"] == "actor-v2" and calls[2][1] == {"lora_name": "actor-v1"}
    kept = VLLMBackend(served, tokenizer, (url,), (0,), progress=False)
    del calls[:]
    kept.release()
    assert calls == []  # while_training=keep: the engine keeps its memory


class _SlowCompletions(_Recorder):
    """Loads adapters at once and answers a completion only after 5 s. The first completion request sends the
    process a Ctrl-C (SIGINT, as SIGTERM becomes in a run) 0.3 s later, so it arrives while requests are open, however
    long the set-up before them took."""

    interrupted = threading.Event()

    def do_POST(self) -> None:
        if self.path == "/v1/completions":
            if not self.interrupted.is_set():
                self.interrupted.set()
                threading.Timer(0.3, signal.raise_signal, (signal.SIGINT,)).start()
            time.sleep(5)
        super().do_POST()


def test_an_interrupt_while_requests_are_open_stops_at_once_without_waiting_for_them(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowCompletions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    model, tokenizer = build_tiny()
    served = ServedAdapters(RoleAdapters(model, AdapterSpec(r=4, alpha=8)), tmp_path)
    backend = VLLMBackend(served, tokenizer, (f"http://127.0.0.1:{server.server_address[1]}",), (0,), progress=False)
    requests = [GenerationRequest(i, "a b c", i) for i in range(8)]
    settings = RoleSettings(SamplingSettings(1.0, 1.0, 4), batch_size=8)
    _SlowCompletions.interrupted.clear()
    # Python's own Ctrl-C handler, as in a fresh `train.py`: in the whole suite an earlier test (not yet identified)
    # leaves another SIGINT handler in place, and Ctrl-C then never became a KeyboardInterrupt here.
    leaked = signal.signal(signal.SIGINT, signal.default_int_handler)
    if leaked is not signal.default_int_handler:
        warnings.warn(f"an earlier test left SIGINT handled by {leaked!r}", stacklevel=1)
    started = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            backend.generate("actor", requests, settings, "slow")
    finally:
        signal.signal(signal.SIGINT, leaked)
    assert _SlowCompletions.interrupted.is_set()  # the interrupt came while the requests were open
    assert time.perf_counter() - started < 3.0  # not the 5 s the open requests take
    server.shutdown()
