"""A callback that interrupts a real run in the middle of one phase, the way a scheduler (SIGTERM) or a user
(SIGINT, Ctrl-C) would, for tests/reliability/test_interrupts.py. Loaded by train.py with tests/ on PYTHONPATH:

    +callbacks.interrupt._target_=interrupting.InterruptDuring +callbacks.interrupt.phase=judging
    +callbacks.interrupt.send=SIGTERM +callbacks.interrupt.iteration=2 +callbacks.interrupt.marker=<file>

The process sends the signal to itself once the phase has done some of its work (a model forward pass or a vLLM
request finished, a file filled but not yet renamed into place), so the signal lands inside the phase on every run,
however fast the machine. It writes `marker` (the phase, the iteration, the time) just before, so a test knows the
signal was sent; once `marker` exists it sends nothing, so the resumed run (same config) runs to its end.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch

# The phases of an iteration a signal can land in, and how each is recognised.
STAGE_PHASES = {"generation": "responses", "judging": "judgments", "meta_judging": "meta_judgments"}
FORWARD_PHASES = (*STAGE_PHASES, "reference", "evaluation")
PHASES = (*FORWARD_PHASES, "dpo", "adapters", "checkpoint")


class InterruptDuring(L.Callback):
    def __init__(self, phase: str, send: str, iteration: int, marker: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"phase={phase!r} is not one of {PHASES}")
        self.phase, self.iteration, self.marker = phase, iteration, Path(marker)
        self.signal = signal.Signals[send]
        self.lock = threading.Lock()
        self.inside: str | None = None  # the phase the run is in now, among those watched
        self.sent = self.marker.exists()  # once per run: the resumed attempt (same config) runs to its end

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from metareward.engine.stages import StageStore
        from metareward.generation import vllm_backend
        from metareward.lightning import datamodule, eval_callbacks
        from metareward.model import adapters

        self.trainer = trainer
        store_run = StageStore.run

        def run(store: StageStore, name: str, record_type: type, compute: Callable[[], Any]) -> Any:
            phase = next((p for p, stage_name in STAGE_PHASES.items() if stage_name == name), None)
            return store_run(store, name, record_type, lambda: self._within(phase, compute))

        StageStore.run = run
        reference = datamodule.reference_logprobs
        datamodule.reference_logprobs = lambda *a, **k: self._within("reference", lambda: reference(*a, **k))
        evaluate = eval_callbacks.WinRateCallback._evaluate
        eval_callbacks.WinRateCallback._evaluate = lambda cb, t: self._within("evaluation", lambda: evaluate(cb, t))
        write_folder = adapters.write_folder_atomic
        adapters.write_folder_atomic = lambda folder, fill: write_folder(folder, self._then_signal("adapters", fill))
        io = trainer.strategy.checkpoint_io
        save = io.save_checkpoint
        io.save_checkpoint = lambda *a, **k: self._then_signal("checkpoint", lambda: save(*a, **k))()
        torch.nn.modules.module.register_module_forward_hook(self._after_forward)
        post = vllm_backend.post_json  # generation on a vLLM server: a request thread has its answer
        vllm_backend.post_json = lambda url, path, *a, **k: self._after_request(path, post(url, path, *a, **k))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._send_if("dpo")

    def _within(self, phase: str | None, work: Callable[[], Any]) -> Any:
        previous, self.inside = self.inside, phase
        try:
            return work()
        finally:
            self.inside = previous

    def _after_forward(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if type(module).__name__.endswith("ForCausalLM") and self.inside in FORWARD_PHASES:
            self._send_if(self.inside)

    def _after_request(self, path: str, reply: Any) -> Any:
        if path == "/v1/completions" and self.inside in FORWARD_PHASES:
            self._send_if(self.inside)
        return reply

    def _then_signal(self, phase: str, fill: Callable[..., Any]) -> Callable[..., Any]:
        def filled(*args: Any) -> Any:
            done = fill(*args)
            self._send_if(phase)  # the file is written, not yet renamed over the previous one
            return done

        return filled

    def _send_if(self, phase: str) -> None:
        with self.lock:  # vLLM requests finish on several threads at once
            if self.sent or phase != self.phase or self.trainer.current_epoch + 1 != self.iteration:
                return
            self.sent = True
        self.marker.write_text(json.dumps({"phase": phase, "iteration": self.iteration, "sent_at": time.time()}))
        os.kill(os.getpid(), self.signal)
        time.sleep(0.5)  # the handler runs here, in the phase, at the latest
