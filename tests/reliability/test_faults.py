"""Faults in the middle of a run: a full disk while writing any artifact, and a damaged checkpoint, adapter folder or
stage file found on resume. Each ends in one sentence naming the file and what to do; nothing half-written is left
where a resume reads."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch
from helpers import compose

from metareward.engine.stages import StageStore
from metareward.run.preflight import preflight_problems
from metareward.run.resume import checkpoint_problem, prepare_run_dir, run_dir_problem
from metareward.storage import artifacts
from metareward.storage.artifacts import (
    ArtifactError,
    read_records,
    write_folder_atomic,
    write_json,
    write_records,
    write_text_atomic,
)
from metareward.storage.records import PhaseResult, PromptRecord
from metareward.storage.run_layout import CHECKPOINT

RECORDS = [PromptRecord(id="a", instruction="Say hi.", category=""), PromptRecord(id="b", instruction="Add 2+2.")]


class FullDisk:
    """A stream whose writes fail as on a full device, after writing part of the text (as a real disk would)."""

    def __init__(self, real) -> None:
        self.real = real

    def write(self, text: str) -> int:
        self.real.write(text[: len(text) // 2])
        self.real.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.real.close()


@pytest.fixture()
def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Text written through the artifacts module fails half-way (tests/reliability/test_full_device.py fills a
    real file system instead, for the writers of other libraries)."""

    def opened(path, mode="r", *args, **kwargs):
        stream = open(path, mode, *args, **kwargs)  # noqa: SIM115 - handed to the caller
        return FullDisk(stream) if "w" in mode else stream

    monkeypatch.setattr(artifacts, "open", opened, raising=False)


WRITERS = {
    "text": lambda path: write_text_atomic(path, "new text\n" * 100),
    "json": lambda path: write_json(path, {"iteration": 2, "loss": 0.5}),
    "records": lambda path: write_records(path, RECORDS),
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_full_disk_names_the_file_and_keeps_the_previous_version(writer: str, tmp_path: Path, full_disk) -> None:
    path = tmp_path / "artifact.jsonl"
    path.write_text("previous\n")
    with pytest.raises(ArtifactError, match=r"no space left on the device while writing .*artifact\.jsonl") as error:
        WRITERS[writer](path)
    assert "resume=true" in str(error.value) and "\n" not in str(error.value)
    assert path.read_text() == "previous\n" and [p.name for p in tmp_path.iterdir()] == ["artifact.jsonl"]


def test_a_full_disk_during_a_stage_leaves_no_stage_file_and_the_stage_is_redone(tmp_path: Path, full_disk) -> None:
    store = StageStore(tmp_path, reuse=True)
    with pytest.raises(ArtifactError, match="no space left"):
        store.run("prompts", PromptRecord, lambda: PhaseResult(RECORDS, {}, 0))
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a half-written stage file was left behind"


def test_a_full_disk_while_saving_the_config_snapshot_is_one_sentence(tmp_path: Path, full_disk) -> None:
    cfg = compose("+experiment=smoke", output_dir=tmp_path)
    with pytest.raises(ArtifactError, match=r"while writing .*run_config\.yaml"):
        prepare_run_dir(cfg, tmp_path, resume=False)
    assert list(tmp_path.iterdir()) == []


def test_other_os_errors_are_not_reported_as_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(artifacts.os, "replace", denied)
    with pytest.raises(PermissionError):
        write_text_atomic(tmp_path / "a.txt", "x")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture()
def finished_run(tmp_path: Path):
    """A run directory as an interrupted run leaves it: snapshot, summary, a checkpoint, adapters, stage files."""
    run_dir = tmp_path / "run"
    cfg = compose("+experiment=smoke", output_dir=run_dir)
    prepare_run_dir(cfg, run_dir, resume=False)
    (run_dir / "summary.json").write_text("{}")
    (run_dir / CHECKPOINT).parent.mkdir(parents=True)
    torch.save({"state_dict": {"lora": torch.arange(4096.0)}, "epoch": 0}, run_dir / CHECKPOINT)
    adapter = run_dir / "checkpoints" / "iter_01" / "actor"
    adapter.mkdir(parents=True)
    from safetensors.torch import save_file

    save_file({"lora_A": torch.ones(64, 8)}, str(adapter / "adapter_model.safetensors"))
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 4}))
    StageStore(run_dir / "iterations" / "iter_01").run("prompts", PromptRecord, lambda: PhaseResult(RECORDS, {}, 0))
    assert run_dir_problem(cfg, run_dir, resume=True) is None
    return cfg, run_dir


def truncate(path: Path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_a_truncated_or_corrupted_checkpoint_is_named_with_what_to_do(finished_run) -> None:
    cfg, run_dir = finished_run
    checkpoint = run_dir / CHECKPOINT
    data = bytearray(checkpoint.read_bytes())
    middle = data.find(b"\x00\x00\x80?")  # the float 1.0 inside the stored tensor: a flipped byte fails its CRC
    data[middle] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    assert "is damaged" in (checkpoint_problem(checkpoint) or "")
    truncate(checkpoint)
    problem = run_dir_problem(cfg, run_dir, resume=True)
    assert problem is not None and f"the checkpoint {checkpoint} is damaged" in problem and "delete it" in problem
    cfg.resume = True
    assert preflight_problems(cfg) == [problem]


class Payload:
    """What a hostile checkpoint carries: unpickling it runs code (here, it would leave a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(finished_run, tmp_path: Path) -> None:
    cfg, run_dir = finished_run
    checkpoint, marker = run_dir / CHECKPOINT, tmp_path / "the payload ran"
    assert run_dir_problem(cfg, run_dir, resume=True) is None  # the run's own checkpoint loads as weights only
    saved = torch.load(checkpoint, weights_only=True)
    torch.save({**saved, "hyper_parameters": Payload(marker)}, checkpoint)
    problem = run_dir_problem(cfg, run_dir, resume=True)
    assert problem is not None and problem.startswith(f"the checkpoint {checkpoint} holds objects other than tensors")
    assert "(getattr)" in problem and "delete it and resume again" in problem  # the global the payload needs
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated_weights", "garbled_config", "missing_weights"])
def test_a_damaged_adapter_folder_is_named(finished_run, damage: str) -> None:
    cfg, run_dir = finished_run
    adapter = run_dir / "checkpoints" / "iter_01" / "actor"
    if damage == "truncated_weights":
        truncate(adapter / "adapter_model.safetensors")
    elif damage == "garbled_config":
        (adapter / "adapter_config.json").write_text('{"r": 4')
    else:
        (adapter / "adapter_model.safetensors").unlink()
    problem = run_dir_problem(cfg, run_dir, resume=True)
    assert problem is not None and f"the adapter folder {adapter} is damaged" in problem, problem
    assert "delete the folder and resume again" in problem


def test_a_run_killed_while_it_saves_adapters_keeps_the_old_folder_or_the_new_one(finished_run) -> None:
    cfg, run_dir = finished_run
    adapter = run_dir / "checkpoints" / "iter_01" / "actor"
    before = (adapter / "adapter_model.safetensors").read_bytes()

    def killed_halfway(target: Path) -> None:
        (target / "adapter_config.json").write_text("{}")
        raise KeyboardInterrupt  # stands in for a kill between the two files

    with pytest.raises(KeyboardInterrupt):
        write_folder_atomic(adapter, killed_halfway)
    assert (adapter / "adapter_model.safetensors").read_bytes() == before
    assert not adapter.with_name(".actor.partial").exists()
    adapter.with_name(".actor.partial").mkdir()  # what a SIGKILL leaves: a hidden half folder, never the real one
    (adapter.with_name(".actor.partial") / "adapter_config.json").write_text('{"r": 4')
    assert run_dir_problem(cfg, run_dir, resume=True) is None
    write_folder_atomic(adapter, lambda target: (target / "adapter_config.json").write_text('{"r": 8}'))
    assert sorted(p.name for p in adapter.iterdir()) == ["adapter_config.json"]
    assert not adapter.with_name(".actor.partial").exists()


def test_a_damaged_stage_file_is_named_before_the_model_loads_and_when_read_back(finished_run) -> None:
    cfg, run_dir = finished_run
    stage = run_dir / "iterations" / "iter_01" / "prompts.jsonl"
    truncate(stage, keep=0.8)  # the last line is cut in the middle of its JSON
    problem = run_dir_problem(cfg, run_dir, resume=True)
    assert problem is not None and f"the stage file {stage}:2 is damaged" in problem and "redo that stage" in problem
    with pytest.raises(ArtifactError, match=r"prompts\.jsonl:2 is damaged.*delete prompts\.jsonl and prompts"):
        StageStore(stage.parent, reuse=True).run("prompts", PromptRecord, lambda: pytest.fail("stage was redone"))
    counts = stage.parent / "prompts.counts.json"
    counts.write_text('{"drops": {}}')
    stage.unlink()
    write_records(stage, RECORDS)
    with pytest.raises(ArtifactError, match="lacks its counts"):
        StageStore(stage.parent, reuse=True).run("prompts", PromptRecord, lambda: pytest.fail("stage was redone"))


def test_read_records_names_a_damaged_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"id": "a", "instruction": "x"}) + '\n{"id": "b", "instr')
    with pytest.raises(ArtifactError, match=r"pairs\.jsonl:2 is damaged: not a valid PromptRecord"):
        read_records(path, PromptRecord)
    path.write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(ArtifactError, match="not UTF-8 text"):
        read_records(path, PromptRecord)
