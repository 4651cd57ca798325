"""Earlier versions of a role's weights, for methods that read a model of an earlier iteration (CREAM).

CREAM ranks iteration t's responses twice: with M_t and with M_t-1 (its LLM-judge form judges them again with M_t-1's
judge, `pairs/label=consistency`; its own form scores them with the actor's DPO implicit reward, which reads M_t-1
and M_t-2 too, `judge/ranking=implicit_reward`). One model lives in the adapters at different times, so no second
copy is needed: as each iteration begins, the role's weights are saved in the iteration's folder
(`<role>_weights.safetensors`, written atomically), and a later iteration lends them to the role for one more pass,
then puts its own back. A resumed run finds the saved weights where the interrupted one left them. Before a warm
start the run saves them as iteration 0's (`save_before_warm_start`), so that iteration 1 compares the warm-started
model with the one before it, as CREAM's first round compares the fine-tuned model with the model before its
fine-tuning. Without a warm start, or where an iteration saved nothing, there is no such earlier version.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from metareward.model.adapters import RoleAdapters
from metareward.model.full_weights import FullWeights
from metareward.storage.artifacts import write_file_atomic
from metareward.storage.run_layout import iteration_dir


def weights_file(role: str) -> str:
    """The file a role's saved weights are kept in, in an iteration's folder."""
    return f"{role}_weights.safetensors"


@dataclass
class WeightsHistory:
    """Saves roles' weights per iteration folder and lends an earlier iteration's back to the role."""

    adapters: RoleAdapters | FullWeights  # with full fine-tuning, a role's weights are the whole model's

    def save(self, folder: Path, role: str) -> Path:
        """The role's weights as they are now, to `folder/<role>_weights.safetensors`."""
        from safetensors.torch import save_file

        target = folder / weights_file(role)
        tensors = {name: tensor.contiguous() for name, tensor in self.adapters.role_tensors(role, "cpu").items()}
        write_file_atomic(target, lambda temporary: save_file(tensors, str(temporary)))
        return target

    def save_before_warm_start(self, run_dir: Path, roles: Sequence[str]) -> None:
        """The roles' weights as they are before the warm start, as iteration 0's (each kept when an earlier attempt
        saved it)."""
        folder = iteration_dir(run_dir, 0)
        for role in roles:
            if not self.saved(folder, role):
                folder.mkdir(parents=True, exist_ok=True)
                self.save(folder, role)

    def saved(self, folder: Path, role: str) -> bool:
        return (folder / weights_file(role)).is_file()

    @contextmanager
    def lent(self, folder: Path, role: str) -> Iterator[None]:
        """The role holds the weights saved in `folder` until the block ends."""
        from safetensors.torch import load_file

        with self.adapters.role_tensors_lent(role, load_file(str(folder / weights_file(role)))):  # copied to the device
            yield
