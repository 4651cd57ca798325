"""Helpers shared by tests (importable as `helpers`: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Every experiment and trainer config, by name: the choices each config option must compose with.
EXPERIMENTS = sorted(path.stem for path in (REPO_ROOT / "conf" / "experiment").glob("*.yaml"))
TRAINERS = sorted(path.stem for path in (REPO_ROOT / "conf" / "trainer").glob("*.yaml"))


def compose(*overrides: str, output_dir: Path | None = None):
    """The config `python train.py <overrides>` would run; output_dir stands in for Hydra's run directory."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        fixed = [f"paths.root_dir={REPO_ROOT}", f"paths.output_dir={output_dir or REPO_ROOT / 'outputs' / 'test'}"]
        return hydra_compose(config_name="train", overrides=fixed + list(overrides))


def write_prompts(path: Path, instructions: list[str]) -> Path:
    """A prompt pool file: one JSON line per instruction, with ids p0, p1, ..."""
    import json

    path.write_text("".join(json.dumps({"id": f"p{i}", "instruction": q}) + "\n" for i, q in enumerate(instructions)))
    return path


def config_problems(*overrides: str) -> list[str]:
    """The problems config validation reports for `overrides`, one per entry (empty when the config is valid)."""
    from metareward.config.build import ConfigError, build_settings

    try:
        build_settings(compose(*overrides))
    except ConfigError as error:
        message = str(error).removeprefix("invalid config:").strip()
        return [line.strip().removeprefix("- ") for line in message.splitlines()]
    return []


def engine_part(cfg, name: str):
    """(value, problems) of the engine settings' field `name` (judge_prompt, ranking, pair_labels, rejections: a part
    built from its config node), read by that field's own rule, without the rest of the config check (which also
    checks this machine)."""
    from omegaconf import OmegaConf

    from metareward.engine.settings import EngineSettings
    from metareward.schema.rules import settings_of

    key, rule = next((key, item.rule) for field, key, item in settings_of(EngineSettings) if field == name)
    return rule.read(key, OmegaConf.select(cfg, key))


def default_engine_settings(**changes):
    """The data engine's settings from the shipped config (their one source), with `changes` applied."""
    import dataclasses

    from metareward.config.build import build_settings

    return dataclasses.replace(build_settings(compose()).engine, **changes)


def quiet_cpu_trainer(**changes):
    """A one-device CPU Trainer as the loop runs it (a data reload per epoch, no validation), silent and without
    checkpoints or loggers, for tests that fit a module directly; `changes` override any argument."""
    import lightning as L

    arguments = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "reload_dataloaders_every_n_epochs": 1,
        "use_distributed_sampler": False,
        "num_sanity_val_steps": 0,
        "limit_val_batches": 0,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return L.Trainer(**{**arguments, **changes})


def smoke_train_command(prompt_file, run_dir, *overrides: str) -> list[str]:
    """`python train.py +experiment=smoke` on `prompt_file`, writing its run to `run_dir`, plus `overrides`."""
    import sys

    base = ["+experiment=smoke", f"data.path={prompt_file}", f"hydra.run.dir={run_dir}"]
    return [sys.executable, str(REPO_ROOT / "train.py"), *base, *overrides]


# Runs killed and resumed (tests/lightning/test_resume.py, test_full_finetune.py).
STAGE_FILES = ("prompts.jsonl", "responses.jsonl", "judgments.jsonl", "pairs.jsonl")


def environment() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def environment_with_tests() -> dict[str, str]:
    """environment() with tests/ on PYTHONPATH, for runs that load a callback written in tests/."""
    return {**environment(), "PYTHONPATH": str(REPO_ROOT / "tests")}


def run_to_end(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a training command to its end (in `environment()` unless `env` is given); fails the test if it fails."""
    done = subprocess.run(args, check=False, env=env or environment(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def kill_when(args: list[str], marker: Path, timeout: float = 300) -> None:
    """Start the run and SIGKILL it as soon as `marker` exists (or fail if it ends first)."""
    process = subprocess.Popen(args, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert process.poll() is None, f"the run ended before {marker.name} appeared"
        assert time.monotonic() < deadline, f"{marker} never appeared"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def stage_texts(run_dir: Path) -> dict[str, str]:
    return {
        str(path.relative_to(run_dir)): path.read_text()
        for path in sorted((run_dir / "iterations").rglob("*.jsonl"))
        if path.name in STAGE_FILES or path.name == "meta_judgments.jsonl"
    }


def plain_logprob(model, prompt: list[int], completion: list[int]) -> float:
    """log p(completion | prompt) by one plain forward pass over the row, no padding: the summed log-softmax of each
    completion token given the tokens before it (an independent reference for the engine's batched scoring)."""
    import torch

    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    steps = torch.log_softmax(logits[:-1], dim=-1).gather(1, ids[0, 1:, None])[:, 0]
    return float(steps[len(prompt) - 1 :].sum())


def move_role(adapters, role: str, seed: int, scale: float = 1.0) -> None:
    """Change the LoRA B matrices of the adapter `role` uses (random, `scale` wide), as a DPO phase would move it
    (with split adapters the other role's stays as it was)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    marker = f"lora_B.{adapters.adapter_for_role[role]}."
    moved = 0
    with torch.no_grad():
        for name, parameter in adapters.model.named_parameters():
            if marker in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
                moved += 1
    assert moved, f"no parameter named {marker}"


def vllm_process_ids() -> dict[int, str]:
    """The vLLM servers and engine processes running on this machine: process id -> command line."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended while listed
            continue
        if "vllm.entrypoints" in line or line.startswith("VLLM::"):
            found[int(cmdline.parent.name)] = line
    return found


def vllm_processes() -> list[str]:
    """Command lines of the vLLM servers and engine processes running on this machine."""
    return list(vllm_process_ids().values())


def session_processes(session: int) -> list[int]:
    """The processes of one session (a server started in a new session: its id, and every process it started)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command's name, which may hold spaces
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session:  # state, ppid, pgrp, session
            found.append(int(stat.parent.name))
    return found


# A vLLM server's arithmetic depends on which requests share a batch: in float32, the log-probs of six requests sent
# together differed from each one's alone by up to 1.9e-5, so a sampled token may flip when the requests of two runs
# arrive at other moments (several training processes, a resumed run). Tests that compare such runs' texts have the
# server compute one request at a time without a prefix cache; then the same request got the same numbers (0 apart).
VLLM_ONE_REQUEST_AT_A_TIME = "generation.extra_args=[--max-num-seqs,1,--no-enable-prefix-caching]"


# trainer=fsdp on two CPU processes: Lightning's FSDPStrategy with the CPU allowances of tests/lightning/cpu_fsdp.py,
# which a run finds with `fsdp_on_cpu_environment()`.
FSDP_ON_CPU = (
    "trainer=fsdp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.precision=32-true",
    "trainer.strategy._target_=cpu_fsdp.CPUFSDPStrategy",
)


def fsdp_on_cpu_environment() -> dict[str, str]:
    """environment_with_tests() that also finds cpu_fsdp.py, one OpenMP thread per process (two processes share
    the cores)."""
    paths = [str(REPO_ROOT / "tests"), str(REPO_ROOT / "tests" / "lightning")]
    return {**environment(), "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1"}
