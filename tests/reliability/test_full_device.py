"""Every writer of the project on a file system that really runs out of space (a small tmpfs): safetensors,
transformers' save_pretrained, torch's checkpoint writer, matplotlib and JSON each end in the one sentence that
names the file, and leave the previous version in place and nothing half-written beside it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from matplotlib.figure import Figure

from metareward.engine.weights_history import WeightsHistory
from metareward.evaluation.plots import save_figures
from metareward.lightning.callbacks import ResumeCheckpoint
from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.model.full_weights import FullWeights
from metareward.model.tiny import build_tiny
from metareward.storage.artifacts import ArtifactError, write_json
from metareward.storage.run_layout import CHECKPOINT

DEVICE_BYTES = 128 * 1024  # room for the previous versions, not for a new copy beside them


@pytest.fixture()
def small_device(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "device"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DEVICE_BYTES}", "tmpfs", str(mount)], check=False)
    if made.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def big_adapters() -> RoleAdapters:
    """Adapters of about 1 MB: more than the device holds."""
    model, _ = build_tiny()
    return RoleAdapters(model, AdapterSpec(r=64, alpha=128, target_modules=("q_proj", "k_proj", "v_proj", "o_proj")))


def figure() -> Figure:
    shown = Figure(figsize=(40, 40))
    shown.add_subplot().imshow(torch.rand(800, 800).numpy())  # noise compresses badly: a large PNG
    return shown


def resume_checkpoint(run_dir: Path) -> None:
    """The callback's write, with torch's writer in place of Lightning's (which calls it)."""
    state = {"state_dict": {"lora": torch.rand(100_000)}}
    trainer = SimpleNamespace(
        save_checkpoint=lambda path, weights_only: torch.save(state, path),
        strategy=SimpleNamespace(barrier=lambda name: None),
        is_global_zero=True,
    )
    callback = ResumeCheckpoint.__new__(ResumeCheckpoint)
    callback.path = run_dir / CHECKPOINT
    callback.on_train_epoch_end(trainer, None)


def save_adapters(directory: Path) -> None:
    adapters = big_adapters()
    tensors = {name: p for name, p in adapters.model.named_parameters() if "lora_" in name}
    adapters.save(directory / "checkpoints/iter_01", tensors)


def save_whole_model(directory: Path) -> None:
    model, tokenizer = build_tiny()
    FullWeights(model).save(directory, model.state_dict(), tokenizer)


WRITERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "safetensors adapters": ("checkpoints/iter_01/actor", save_adapters),
    "save_pretrained": ("policy", save_whole_model),
    "judge history": (
        "iter_01/judge_weights.safetensors",
        lambda d: WeightsHistory(big_adapters()).save(d / "iter_01", "judge"),
    ),
    "torch checkpoint": (CHECKPOINT, resume_checkpoint),
    "matplotlib": ("plots/noise.png", lambda d: save_figures({"noise": figure()}, d / "plots")),
    "json": ("summary.json", lambda d: write_json(d / "summary.json", {"rows": ["x" * 1000] * 400})),
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_full_device_is_one_sentence_and_keeps_the_previous_version(writer: str, small_device: Path) -> None:
    name, write = WRITERS[writer]
    name = str(name)
    target = small_device / name
    previous = target / "previous" if "." not in target.name and writer != "torch checkpoint" else target
    previous.parent.mkdir(parents=True, exist_ok=True)
    previous.write_text("the previous version\n")
    before = sorted(p.relative_to(small_device) for p in small_device.rglob("*"))
    with pytest.raises(ArtifactError, match=r"no space left on the device while writing") as error:
        write(small_device)
    message = str(error.value)
    assert "\n" not in message and name.split("/")[-1] in message and "resume=true" in message
    assert previous.read_text() == "the previous version\n"
    assert sorted(p.relative_to(small_device) for p in small_device.rglob("*")) == before, "something was left"
