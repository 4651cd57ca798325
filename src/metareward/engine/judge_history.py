"""The judge of the previous iteration, for labellings that compare two judges' rankings (CREAM).

Iteration t judges with M_t's judge; CREAM also ranks the same responses with M_{t-1}'s. Both live in one adapter
at different times, so no second model is needed: as each iteration begins, the judge adapter's weights are saved in
the iteration's folder (`judge_weights.safetensors`, written atomically), and iteration t lends iteration t-1's
weights to the adapter for one more judging pass, then puts its own back. A resumed run finds the saved weights
where the interrupted one left them. Before a warm start the run saves the judge as iteration 0's (`save_before_
warm_start`), so that iteration 1 compares the warm-started judge with the one before it, as CREAM's first round
compares the fine-tuned model with the model before its fine-tuning. Without a warm start, or where the previous
iteration saved nothing, an iteration has no previous judge.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from metareward.model.adapters import RoleAdapters
from metareward.model.full_weights import FullWeights
from metareward.storage.artifacts import write_file_atomic
from metareward.storage.run_layout import iteration_dir

WEIGHTS_FILE = "judge_weights.safetensors"


@dataclass
class JudgeHistory:
    """Saves the judge's weights per iteration folder and lends an earlier iteration's back to the adapter."""

    adapters: RoleAdapters | FullWeights  # with full fine-tuning, the judge's weights are the whole model's

    def save(self, folder: Path) -> Path:
        """The judge adapter's weights as they are now, to `folder/judge_weights.safetensors`."""
        from safetensors.torch import save_file

        target = folder / WEIGHTS_FILE
        tensors = {name: tensor.contiguous() for name, tensor in self.adapters.role_tensors("judge", "cpu").items()}
        write_file_atomic(target, lambda temporary: save_file(tensors, str(temporary)))
        return target

    def save_before_warm_start(self, run_dir: Path) -> None:
        """The judge as it is before the warm start, as iteration 0's (kept when an earlier attempt saved it)."""
        folder = iteration_dir(run_dir, 0)
        if not self.saved(folder):
            folder.mkdir(parents=True, exist_ok=True)
            self.save(folder)

    def saved(self, folder: Path) -> bool:
        return (folder / WEIGHTS_FILE).is_file()

    @contextmanager
    def lent(self, folder: Path) -> Iterator[None]:
        """The judge adapter holds the weights saved in `folder` until the block ends."""
        from safetensors.torch import load_file

        with self.adapters.role_tensors_lent("judge", load_file(str(folder / WEIGHTS_FILE))):  # copied to the device
            yield
