"""The lock file `make setup` installs from: it pins, with hashes, every package pyproject.toml asks for (torch
apart, installed first with PIP_TORCH_ARGS), at versions inside pyproject's bounds; and `make lock` reports what a
re-resolution moved."""

from __future__ import annotations

import importlib.util
import re

import tomllib
from helpers import REPO_ROOT
from packaging.requirements import Requirement
from packaging.version import Version

LOCK = REPO_ROOT / "requirements" / "main.lock"


def lock_changes():
    spec = importlib.util.spec_from_file_location("lock_changes", REPO_ROOT / "requirements" / "lock_changes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_requirement_of_pyproject_is_locked_within_its_bounds_and_hashed():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    wanted += [Requirement(r) for extra in ("dev", "bench", "cluster") for r in project["optional-dependencies"][extra]]
    pins = lock_changes().pins(LOCK)
    for requirement in wanted:
        name = normalised(requirement.name)
        if name == "torch":
            assert name not in pins  # installed before the lock, from PIP_TORCH_ARGS
            continue
        assert name in pins, f"{requirement.name} is not in {LOCK.name}: run `make lock`"
        assert Version(pins[name]) in requirement.specifier, f"{name}=={pins[name]} is outside {requirement}"
    text = LOCK.read_text()
    for block in re.split(r"\n(?=[a-z0-9])", text.split("\n\n", 1)[-1]):
        if pin := re.match(r"^[A-Za-z0-9_.\-]+==", block):
            assert "--hash=sha256:" in block, f"{pin[0]} has no hash"
    assert "file://" not in text and "--find-links" not in text  # nothing of this machine's own indexes


def test_lock_changes_lists_added_removed_and_moved_packages(tmp_path):
    old, new = tmp_path / "old.lock", tmp_path / "new.lock"
    old.write_text("a==1.0 \\\n    --hash=sha256:00\nRemoved_Pkg==2\nsame==3\n")
    new.write_text("a==1.1 \\\n    --hash=sha256:01\nadded==0.1\nsame==3\n")
    module = lock_changes()
    assert module.changes(module.pins(old), module.pins(new)) == ["+ added==0.1", "- removed-pkg==2", "~ a 1.0 -> 1.1"]
    assert module.changes(module.pins(new), module.pins(new)) == []
