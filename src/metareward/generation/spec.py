"""The `generation` config group as typed settings: which backend generates, and how vLLM is started or reached.

Checked before any model is loaded (no torch or vLLM import here): `generation=vllm` without vLLM's environment is
refused in one sentence naming `make setup-vllm`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from metareward.generation.vllm_server import ServerSettings, python_problems
from metareward.schema.rules import COUNT, UNUSABLE, Choice, Group, Texts, Value, read, rules_of, setting

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
    server the run starts (read from the same group)."""

    backend: str = setting("backend", Choice(BACKENDS), "hf")
    model_path: str = setting("model_path", Value(str), "")
    urls: tuple[str, ...] = setting("urls", Texts("http://node1:8000", clean=lambda url: url.rstrip("/")), ())
    max_in_flight: int = setting("max_in_flight", COUNT, 64)
    adapter_dir: str = setting("adapter_dir", Value(str), "")
    while_training: str = setting("while_training", Choice(WHILE_TRAINING), "keep")
    server: ServerSettings = setting("", Group(ServerSettings), default_factory=ServerSettings)

    def problems(self, processes: int | None = 1, accelerator: object = "cpu") -> list[str]:
        """Every unusable value; `processes` is the number of training processes (devices x nodes; None when it
        cannot be told), `accelerator` trainer.accelerator."""
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
        if processes != 1 and self.while_training != "keep":
            found.append(
                f"generation.while_training={self.while_training} stops or pauses the servers while DPO trains, but "
                f"{processes or 'several'} training processes share them: use keep (and give the servers GPUs of "
                "their own with generation.devices, or servers of their own with generation.urls)"
            )
        if self.while_training == "sleep" and str(accelerator) == "cpu":
            found.append(
                "generation.while_training=sleep needs a GPU (vLLM's sleep mode frees GPU memory); on CPU use keep "
                "(the KV cache is generation.kv_cache_gb) or stop"
            )
        elif self.while_training == "stop" and self.urls:
            found.append(
                "generation.while_training=stop restarts the servers this run starts and generation.urls names "
                "servers it does not own; use keep or sleep with them"
            )
        return found


def lora_rank_slot(rank: int) -> int:
    """The smallest LoRA rank vLLM can be sized for that holds adapters of rank `rank`."""
    return next((slot for slot in VLLM_LORA_RANKS if slot >= rank), VLLM_LORA_RANKS[-1])


def read_generation(node: Any) -> tuple[Any, list[str]]:
    """The spec from the `generation` config node (None: the hf backend) and its problems; each key is read by its
    rule, and a key no setting has is refused (a server option goes in extra_args)."""
    if node is None:
        return GenerationSpec(), []
    known = {key for key, _ in rules_of(GenerationSpec)}
    unknown = [
        f"generation.{key} is not a generation setting; see conf/generation/vllm.yaml"
        for key in node
        if key not in known
    ]
    spec, found = read(GenerationSpec, node, "generation")
    if spec is UNUSABLE:
        return spec, unknown + found
    server = replace(spec.server, max_lora_rank=lora_rank_slot(spec.server.max_lora_rank))
    return replace(spec, server=server), unknown + found
