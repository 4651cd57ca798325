"""`python -m metareward.bench wheelhouse`: download the wheels a CUDA machine without internet needs for the GPU check.

Such machines usually have a CUDA torch, transformers, peft and Lightning, and not Hydra, omegaconf, bitsandbytes or
pytest. Each pinned line of requirements/gpu-wheelhouse.txt is downloaded without its dependencies (so the list names
every one) for the target's Python and platform, not this machine's; a package the registry has only as source is
built into a wheel here, which must come out pure Python to install anywhere. The folder ends up holding exactly
the pinned wheels, with a manifest.json, and the report gives each size and the total with the repository,
against a budget: the kit travels to the GPU machine as one bundle of limited size.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from metareward.bench.gpu_report import REPO_ROOT, commit

PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")
MIB = 1024 * 1024


class WheelhouseError(RuntimeError):
    """A pin cannot be turned into a wheel for the target; the message names it and the fix."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: str

    @property
    def key(self) -> str:
        """The name as wheel file names spell it (PEP 427: runs of -_. become _), lower case."""
        return re.sub(r"[-_.]+", "_", self.name).lower()

    def matches(self, wheel: Path) -> bool:
        name, version = wheel.name.split("-")[:2]
        return name.lower() == self.key and version == self.version


def read_pins(path: Path, skip: Sequence[str] = ()) -> list[Pin]:
    """NAME==VERSION lines (comments and blank lines ignored), less the names in `skip`."""
    pins = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not version.strip():
            raise WheelhouseError(f"{path}:{number}: {line!r} is not NAME==VERSION; pin one version of each package")
        if name.strip() not in skip:
            pins.append(Pin(name.strip(), version.strip()))
    return pins


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False)


def fetch(pin: Pin, into: Path, python_version: str) -> Path:
    """The pin's wheel for the target, downloaded into `into`; built from source only where no wheel exists."""
    target = ["--python-version", python_version, "--implementation", "cp", "--only-binary=:all:"]
    target += [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    spec = f"{pin.name}=={pin.version}"
    done = pip("download", "-q", "--no-deps", *target, "-d", str(into), spec)
    if done.returncode != 0:
        done = pip("wheel", "-q", "--no-deps", "-w", str(into), spec)
        built = [w for w in into.glob("*.whl") if pin.matches(w)]
        if done.returncode == 0 and built and not built[0].name.endswith("-none-any.whl"):
            raise WheelhouseError(
                f"{spec} has no wheel for the target and builds only for this machine: {built[0].name}"
            )
    found = [w for w in into.glob("*.whl") if pin.matches(w)]
    if done.returncode != 0 or not found:
        error = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise WheelhouseError(f"{spec}: {error}")
    return found[0]


def build(pins: Sequence[Pin], dest: Path, python_version: str) -> list[Path]:
    """`dest` holding exactly the pinned wheels: those already there are kept, the others fetched, the rest removed."""
    dest.mkdir(parents=True, exist_ok=True)
    kept = []
    for pin in pins:
        present = [w for w in dest.glob("*.whl") if pin.matches(w)]
        if present:
            kept.append(present[0])
            continue
        print(f"  fetching {pin.name}=={pin.version}", flush=True)
        with tempfile.TemporaryDirectory() as scratch:
            wheel = fetch(pin, Path(scratch), python_version)
            kept.append(Path(shutil.move(str(wheel), dest / wheel.name)))
    for stale in set(dest.glob("*.whl")) - set(kept):
        stale.unlink()
    return kept


def repository_bytes(root: Path = REPO_ROOT) -> int | None:
    """Bytes of the working tree that travels: tracked files plus untracked ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        return None
    files = {root / name for name in listed.stdout.decode().split("\0") if name}
    return sum(path.stat().st_size for path in files if path.is_file())


def report(wheels: Sequence[Path], repo: int | None, budget_mib: float) -> tuple[str, bool]:
    """The size table and whether the repository and the wheels together stay within the budget."""
    total = sum(w.stat().st_size for w in wheels)
    lines = [f"  {w.stat().st_size / MIB:8.2f} MiB  {w.name}" for w in sorted(wheels, key=lambda w: -w.stat().st_size)]
    lines.append(f"  {total / MIB:8.2f} MiB  wheelhouse, {len(wheels)} wheels")
    if repo is None:
        return "\n".join([*lines, "  repository size unknown (no git checkout)"]), True
    together = total + repo
    lines.append(f"  {repo / MIB:8.2f} MiB  repository (tracked and untracked-not-ignored files)")
    lines.append(f"  {together / MIB:8.2f} MiB  together, budget {budget_mib:.0f} MiB")
    return "\n".join(lines), together <= budget_mib * MIB


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m metareward.bench wheelhouse", description=__doc__)
    p.add_argument("--requirements", type=Path, default=REPO_ROOT / "requirements" / "gpu-wheelhouse.txt")
    p.add_argument("--dest", type=Path, default=REPO_ROOT / "wheelhouse", help="the wheel folder (git-ignored)")
    p.add_argument("--python-version", default="3.12", help="the GPU machine's Python, e.g. 3.12")
    p.add_argument("--skip", action="append", default=[], help="leave this package out (repeatable)")
    p.add_argument("--budget-mib", type=float, default=60.0, help="repository + wheels must fit in this")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        wheels = build(read_pins(args.requirements, args.skip), args.dest, args.python_version)
    except WheelhouseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    made = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest = {
        "python_version": args.python_version,
        "platforms": PLATFORMS,
        "made": made,
        "commit": commit(None)["commit"],
    }
    manifest["wheels"] = {w.name: w.stat().st_size for w in wheels}
    (args.dest / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    text, fits = report(wheels, repository_bytes(), args.budget_mib)
    print(f"wheels for Python {args.python_version} in {args.dest}:\n{text}")
    if not fits:
        print("error: over the budget; leave the largest wheel out with --skip NAME (the check skips what needs it)")
    return 0 if fits else 1


if __name__ == "__main__":
    sys.exit(main())
