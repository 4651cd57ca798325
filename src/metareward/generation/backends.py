"""Building the generation backend a run uses from its `generation` settings (see `generation.policy`)."""

from __future__ import annotations

import atexit
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from metareward.generation.policy import GenerationBackend, Policy
from metareward.generation.spec import GenerationSpec, lora_rank_slot
from metareward.generation.vllm_backend import (
    AdapterSource,
    ServedAdapters,
    ServedModels,
    ServedWeights,
    VLLMBackend,
    weights_digest,
    write_served_copy,
)
from metareward.generation.vllm_server import ServerSettings, VLLMServer, VLLMServerError
from metareward.generation.weights_lease import WeightsLease
from metareward.model.chat import stop_token_ids
from metareward.model.embedded import EMBEDDED_NAME, ensure_embedded_checkpoint
from metareward.model.loading import BUILTIN_PREFIX

log = logging.getLogger(__name__)


def served_model_path(path: str) -> str:
    """What a vLLM server loads for model.path: the embedded checkpoint's directory, a local directory, or a hub
    id as it is."""
    if path == BUILTIN_PREFIX + EMBEDDED_NAME:
        return str(ensure_embedded_checkpoint())
    local = Path(path).expanduser()
    return str(local) if local.exists() else path


def sized_server(server: ServerSettings, adapter_rank: int, sleep_mode: bool = False) -> ServerSettings:
    """The server settings with a LoRA rank slot that holds adapters of rank `adapter_rank` (and sleep mode on for
    generation.while_training=sleep)."""
    rank = max(server.max_lora_rank, lora_rank_slot(adapter_rank))
    return dataclasses.replace(server, max_lora_rank=rank, sleep_mode=sleep_mode or server.sleep_mode)


@dataclass(frozen=True)
class Processes:
    """The training processes one backend per process serves: this one's `rank`, how many there are, and `share`,
    a collective every process calls at the same point, which returns rank 0's value on every rank."""

    rank: int = 0
    world_size: int = 1
    share: Callable[[Any], Any] = field(default=lambda value: value)


ONE_PROCESS = Processes()


def build_backend(
    spec: GenerationSpec,
    adapters: AdapterSource,
    tokenizer: PreTrainedTokenizerBase,
    run_dir: Path,
    max_prompt_tokens: int,
    progress: bool = True,
    processes: Processes = ONE_PROCESS,
) -> GenerationBackend:
    """`Policy` for generation=hf; for generation=vllm a `VLLMBackend` on `spec.urls`, or on a server started here
    (stopped by `close()`, or when this process exits). Either refuses prompts over `max_prompt_tokens`. With several
    training `processes` (each builds its own backend) they share the servers: rank 0 starts the run's own server
    and publishes the adapter versions (or, with full fine-tuning, writes the weights' copies, which every rank
    holds on the servers while its requests use them), every rank sends its share of each phase."""
    stops = stop_token_ids(tokenizer, getattr(adapters.model, "generation_config", None))
    in_process = Policy(adapters, tokenizer, max_prompt_tokens, progress, stops)  # type: ignore[arg-type]
    if spec.backend == "hf":
        return in_process
    urls = spec.urls
    lora = getattr(adapters.model, "peft_config", None)  # None: full fine-tuning, served by reloading weights
    folder = (Path(spec.adapter_dir) if spec.adapter_dir else Path(run_dir) / "vllm_adapters").resolve()
    served_path = served_model_path(spec.model_path)
    lease = WeightsLease(folder, processes.rank) if processes.world_size > 1 and not lora else None
    if not lora:  # the server starts from a copy of M0 it can reload in place (see write_served_copy)
        served_path = str(folder / "seed")
    if not lora and processes.rank == 0:  # before the server starts, which the other ranks wait for
        write_served_copy(adapters.seed_model, folder / "seed", tokenizer)  # type: ignore[attr-defined]
        if lease is not None:
            lease.reset(held=served_path)
    servers: tuple[VLLMServer, ...] = ()
    if not urls:
        rank = max(int(config.r) for config in lora.values()) if lora else 0
        settings = sized_server(spec.server, rank, sleep_mode=spec.while_training == "sleep")
        settings = settings if lora else dataclasses.replace(settings, weight_reload=True)
        urls, servers = own_server(served_path, settings, Path(run_dir), processes)
    served: ServedModels = ServedAdapters(
        adapters, folder, shared=processes.world_size > 1, publishes=processes.rank == 0
    )
    if not lora:
        seed_digest = weights_digest(adapters.seed_model)  # type: ignore[attr-defined]
        served = ServedWeights(adapters, folder, served_path, seed_digest, lease=lease, publishes=processes.rank == 0)
    return VLLMBackend(
        served,
        tokenizer,
        urls,
        stops,
        max_prompt_tokens,
        progress,
        spec.max_in_flight,
        servers,
        spec.while_training,
        in_process,
    )


def own_server(
    served_path: str, settings: ServerSettings, run_dir: Path, processes: Processes
) -> tuple[tuple[str, ...], tuple[VLLMServer, ...]]:
    """The run's own server, started by rank 0, and its URL on every rank. A start that fails ends every process:
    rank 0 with its own error, the others with its message."""
    outcome: tuple[str, str] | None = None
    failure: Exception | None = None
    server = None
    if processes.rank == 0:
        server = VLLMServer(served_path, settings, run_dir / "vllm_server.log")
        atexit.register(server.stop)
        log.info("starting the vLLM server (log: %s)", server.log_path)
        try:
            outcome = ("url", server.start())
            log.info("vLLM server at %s ready in %.0f s", outcome[1], server.startup_seconds)
        except Exception as error:  # noqa: BLE001 - shared with the other ranks, then raised here as it was
            outcome, failure = ("error", str(error)), error
    kind, value = processes.share(outcome)
    if failure is not None:
        raise failure
    if kind == "error":
        raise VLLMServerError(f"the vLLM server that rank 0 started for the run failed: {value}")
    return (value,), (server,) if server is not None else ()
