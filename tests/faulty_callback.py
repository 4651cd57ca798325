"""A callback that fails the way a bug would, for the test of how a run reports a fault (loaded by train.py through
`+callbacks.fault._target_=faulty_callback.FailsAfterFirstIteration` with tests/ on PYTHONPATH)."""

from __future__ import annotations

import lightning as L


class FailsAfterFirstIteration(L.Callback):
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        raise RuntimeError("a fault for the test\nwith a second line")
