"""Lightning's WandbLogger without the `anonymous` argument it always hands to `wandb.init`: wandb (0.22 and
later) warns on every run that the setting has no effect, whatever its value."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger


class WandbLogger(LightningWandbLogger):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
