"""The `generation` config group as typed settings: which backend generates, and how vLLM is started or reached.

Checked before any model is loaded (no torch or vLLM import here): `generation=vllm` without vLLM's environment is
refused in one sentence naming `make setup-vllm`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from metareward.generation.vllm_server import ServerSettings, python_problems

BACKENDS = ("hf", "vllm")
# What a vLLM engine does while DPO trains: keeps its memory, sleeps (GPU only) or is stopped and started again.
WHILE_TRAINING = ("keep", "sleep", "stop")
# LoRA ranks a vLLM engine can be sized for; the smallest one >= the adapters' r is used.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
UNSERVABLE_MODELS = ("builtin:tiny",)  # built in memory, never written to disk for a server to read


@dataclass(frozen=True)
class GenerationSpec:
    """backend: `hf` (our sampler, in process) or `vllm`. For vllm: `model_path` (the model.path to serve), `urls`
    of servers already running (then none is started: multi-node), `max_in_flight` open requests, `adapter_dir`
    (where adapter versions are written; empty: the run directory's `vllm_adapters/`, which servers given by URL
    must be able to read), `while_training` (keep, sleep or stop the engine during each DPO phase) and the settings of a
    server the run starts."""

    backend: str = "hf"
    model_path: str = ""
    urls: tuple[str, ...] = ()
    max_in_flight: int = 64
    adapter_dir: str = ""
    while_training: str = "keep"
    server: ServerSettings = field(default_factory=ServerSettings)

    def problems(self, trainer_devices: object = 1, accelerator: object = "cpu") -> list[str]:
        """Every unusable value; `trainer_devices` is trainer.devices (vLLM serves one training process for now),
        `accelerator` trainer.accelerator."""
        if self.backend not in BACKENDS:
            return [f"generation.backend={self.backend!r} is not one of {list(BACKENDS)}; use generation=hf or vllm"]
        if self.backend == "hf":
            return []
        found = []
        if not self.urls:
            found += python_problems(self.server.python)
        if self.model_path in UNSERVABLE_MODELS:
            found.append(
                f"generation=vllm serves a model from disk and model.path={self.model_path} exists only in memory; "
                "use generation=hf with it"
            )
        if str(trainer_devices) != "1":
            found.append(
                f"generation=vllm serves one training process and trainer.devices={trainer_devices}: train on one "
                "device (trainer=gpu; the server can take other GPUs with generation.devices and "
                "generation.tensor_parallel_size) or use generation=hf"
            )
        if self.while_training not in WHILE_TRAINING:
            found.append(f"generation.while_training={self.while_training!r} is not one of {list(WHILE_TRAINING)}")
        elif self.while_training == "sleep" and str(accelerator) == "cpu":
            found.append(
                "generation.while_training=sleep needs a GPU (vLLM's sleep mode frees GPU memory); on CPU use keep "
                "(the KV cache is generation.kv_cache_gb) or stop"
            )
        elif self.while_training == "stop" and self.urls:
            found.append(
                "generation.while_training=stop restarts the servers this run starts and generation.urls names "
                "servers it does not own; use keep or sleep with them"
            )
        if self.max_in_flight < 1:
            found.append(f"generation.max_in_flight={self.max_in_flight} must be at least 1")
        if self.server.tensor_parallel_size < 1 or self.server.data_parallel_size < 1:
            found.append("generation.tensor_parallel_size and generation.data_parallel_size must be at least 1")
        return found


def lora_rank_slot(rank: int) -> int:
    """The smallest LoRA rank vLLM can be sized for that holds adapters of rank `rank`."""
    return next((slot for slot in VLLM_LORA_RANKS if slot >= rank), VLLM_LORA_RANKS[-1])


def generation_spec(node: Any) -> GenerationSpec:
    """The spec from the `generation` config node (a mapping; None: the hf backend). Server keys sit beside
    `backend` in the YAML; unknown keys are refused by the dataclass constructors."""
    if node is None:
        return GenerationSpec()
    values = dict(node)
    server_keys = {f.name for f in fields(ServerSettings)}
    server = {key: values.pop(key) for key in list(values) if key in server_keys}
    if "extra_args" in server:
        server["extra_args"] = tuple(str(arg) for arg in server["extra_args"] or ())
    if server.get("max_lora_rank") is not None:
        server["max_lora_rank"] = lora_rank_slot(int(server["max_lora_rank"]))
    values["urls"] = tuple(str(url).rstrip("/") for url in values.get("urls") or ())
    return GenerationSpec(**values, server=ServerSettings(**server))
