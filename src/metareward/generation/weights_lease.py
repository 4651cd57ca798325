"""One server's weights shared by several training processes under full fine-tuning.

With LoRA every version of every adapter can be loaded at once; with full fine-tuning the server holds one set of
weights (M0's, or a saved copy of the trained ones) and reloads them in place. The run's phases end with an exchange
of results between the ranks, so the ranks usually ask for the same weights at the same time; but a rank that asks
for other weights while another rank's requests are in flight (a callback that calls the backend on one rank, a
phase that asks two roles before its exchange) would have them answered by the wrong model, silently. So a process
*holds* the weights its requests use for as long as they are in flight, and the weights are reloaded only when no
other process holds them: a readers-writer lock over the servers' one model, kept in a JSON file under an exclusive
`flock` in a folder every process reads (on several nodes, a shared file system that supports `flock`).

Rank 0 writes the copy of each new set of trained weights and records it by weights digest (`copies`); the others
wait for the copy of the weights they hold (every process holds the same weights at the same point of the
iteration). A holder whose process has ended on this host is dropped, so a crash does not block the others.
"""

from __future__ import annotations

import copy
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from metareward.generation.vllm_server import VLLMServerError
from metareward.storage.artifacts import write_json

log = logging.getLogger(__name__)

LEASE_FILE = "weights.json"  # held: the folder the servers hold; holders: rank -> who; copies: digest -> folder
LOCK_FILE = "weights.lock"
WAITING_NOTE_S = 60.0  # how often a process waiting for the others says so in the log
PUBLISH_WAIT_S = 900.0  # the longest a process waits for rank 0 to publish the weights it holds
PUBLISH_POLL_S = 0.2
T = TypeVar("T")


def published_by_rank_0(find: Callable[[], T | None], what: str, wait_s: float, poll_s: float = PUBLISH_POLL_S) -> T:
    """What `find()` returns once rank 0 has published it (an adapter version's name, a copy of the weights); after
    `wait_s`, one sentence: rank 0 never published `what` (the weights this process holds, and where it looked)."""
    waited = 0.0
    while (found := find()) is None:
        if waited >= wait_s:
            raise VLLMServerError(
                f"waited {wait_s:.0f} s for the training process of rank 0 to {what}; were the processes' weights the "
                "same?"
            )
        time.sleep(poll_s)
        waited += poll_s
    return found


@dataclass
class WeightsLease:
    """This process's (`rank`'s) view of the shared record in `directory`."""

    directory: Path
    rank: int
    wait_s: float = PUBLISH_WAIT_S  # the longest wait for rank 0's copy of a set of weights
    poll_s: float = PUBLISH_POLL_S

    def reset(self, held: str) -> None:
        """A new server holds `held` (M0's folder) and nobody holds anything: rank 0, before the server starts."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.locked() as state:
            state.clear()
            state.update(held=held, holders={}, copies={})

    @contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """The shared record, read and written back (when changed) under the lock (nothing else runs under it but
        file work and the reload itself)."""
        path = self.directory / LEASE_FILE
        with open(self.directory / LOCK_FILE, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                state = json.loads(path.read_text()) if path.is_file() else {}
                before = copy.deepcopy(state)
                yield state
                if state != before:  # a look (a wait, a copy asked for) writes nothing
                    write_json(path, state)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def hold(self, folder: str, reload: Callable[[str], None]) -> None:
        """Hold `folder`'s weights on the servers, reloading them first (`reload(folder)`) once no other process
        holds the ones there now; waits for as long as the others' requests take."""
        me, started, noted = str(self.rank), time.monotonic(), time.monotonic()
        while True:
            with self.locked() as state:
                holders = {r: h for r, h in state.get("holders", {}).items() if r != me and _alive(h)}
                if state.get("held") != folder and not holders:
                    reload(folder)
                    state["held"] = folder
                if state.get("held") == folder:
                    state["holders"] = {**holders, me: {"host": socket.gethostname(), "pid": os.getpid()}}
                    return
                state["holders"] = holders
            if time.monotonic() - noted >= WAITING_NOTE_S:
                noted = time.monotonic()
                waiting_for = ", ".join(sorted(holders))
                log.info(
                    "rank %d has waited %.0f s for ranks %s to finish with the served weights",
                    self.rank,
                    noted - started,
                    waiting_for,
                )
            time.sleep(self.poll_s)

    def let_go(self) -> None:
        """This process's requests are answered: the weights may be reloaded for another."""
        with self.locked() as state:
            state.get("holders", {}).pop(str(self.rank), None)

    def record_copy(self, digest: str, folder: str) -> None:
        with self.locked() as state:
            state.setdefault("copies", {})[digest] = folder

    def copy_of(self, digest: str) -> str:
        """The folder rank 0 saved the weights with `digest` in, once it has."""

        def find() -> str | None:
            with self.locked() as state:
                return state.get("copies", {}).get(digest)

        path = self.directory / LEASE_FILE
        what = f"save the weights this process holds for the vLLM server ({path} has no copy of them)"
        return published_by_rank_0(find, what, self.wait_s, self.poll_s)


def _alive(holder: dict[str, Any]) -> bool:
    """False for a holder whose process has ended on this host (one on another host is taken as alive)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get("pid", 0)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True
