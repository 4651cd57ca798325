"""SIGTERM, as schedulers send it on pre-emption (SLURM, Kubernetes, `timeout`), stops a run the way Ctrl-C does.

Python turns SIGINT into KeyboardInterrupt wherever the main thread is, so Ctrl-C already stops in any phase and
Lightning shuts down gracefully (finished stages and checkpoints are kept, the summary says `interrupted`). SIGTERM
by default kills the process at once, and under `trainer.fit` Lightning's own handler only sets a flag that its
training loop reads between batches, so a run kept generating for minutes. Here SIGTERM raises `Terminated`, a
KeyboardInterrupt, so it takes the Ctrl-C path; the run then exits with 143 (128 + SIGTERM), as shells report it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

TERMINATED_EXIT_CODE = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """Raised where the main thread is when SIGTERM arrives."""


@dataclass
class TerminationFlag:
    received: bool = False


@contextmanager
def sigterm_interrupts() -> Iterator[TerminationFlag]:
    """While inside, the first SIGTERM raises Terminated; later ones are ignored so the shutdown can finish."""
    flag = TerminationFlag()

    def handle(signum: int, frame: FrameType | None) -> None:
        if flag.received:
            return
        flag.received = True
        raise Terminated(f"received signal {signum}")

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)
