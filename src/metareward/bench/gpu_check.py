"""`python -m metareward.bench gpu [--quick]`: check and measure a CUDA machine without internet, in one command.

GPU machines without internet are often had for minutes at a time, so one call must always bring figures back.
The check is a row of parts, each its own process group with its own time limit and one overall budget (8 minutes
by default): a part that fails or hangs is killed and reported, with its reason and the tail of its log, and the
next part starts. This process imports nothing beyond the standard library, so it reports even a broken torch.

Parts, in order: `install` (the wheelhouse, with pip and no index, into a temporary folder put first on PYTHONPATH),
`environment` (GPU, versions, the project's imports), `gpu_tests` (pytest tests/gpu), `scale_lora` and `scale_qlora`
(`bench scale`: DPO steps of a random Llama-3-8B-shaped model), `loop` (train.py, one iteration, trainer=gpu, on a
random Llama-3.2-1B-shaped model). The record goes to <out>/<date>-<gpu>.json and .md and a table is printed.
`--quick` is the dry run: tiny shapes on CPU (CUDA hidden), written to <out>/dry-run.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from metareward.bench import gpu_report
from metareward.bench.junit import read_junit

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_BUDGET_S = 480.0
MIN_PART_S = 5.0  # below this, a part is not started: it could not finish anyway
SCRATCH_IN_RAM_BYTES = 24e9
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}


@dataclass(frozen=True)
class Context:
    """What every part sees: the mode, the folders, and the environment of its process."""

    quick: bool
    wheelhouse: Path
    site: Path
    logs: Path
    env: dict[str, str]
    fail: frozenset[str] = frozenset()
    hang: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Part:
    """One step of the check: the command of its process, how to read its result, and its time limit."""

    name: str
    limit_s: float
    command: Callable[[Context, str], list[str]]
    read: Callable[[Context, str], dict[str, Any]]
    precheck: Callable[[Context], str | None] = lambda ctx: None
    # pytest exits 1 when a test fails: its report, not its exit code, says which
    exit_code_decides: bool = True


def wheels(ctx: Context) -> list[Path]:
    return sorted(ctx.wheelhouse.glob("*.whl")) if ctx.wheelhouse.is_dir() else []


def install_command(ctx: Context, name: str) -> list[str]:
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    return [*pip, "--disable-pip-version-check", "--target", str(ctx.site), *map(str, wheels(ctx))]


def no_wheelhouse(ctx: Context) -> str | None:
    if wheels(ctx):
        return None
    return f"no wheels in {ctx.wheelhouse}: run `make wheelhouse` where the package registry is reachable"


def read_install(ctx: Context, name: str) -> dict[str, Any]:
    size = sum(p.stat().st_size for p in ctx.site.rglob("*") if p.is_file())
    figures = {"wheels": [p.name for p in wheels(ctx)], "site": str(ctx.site), "installed_mb": size / 1e6}
    return {"status": "passed", "reason": None, "figures": figures}


def part_command(part: str, *extra: str) -> Callable[[Context, str], list[str]]:
    """A gpu_parts process (`part`, with `extra` arguments) that writes its result to <logs>/<name>.json."""

    def command(ctx: Context, name: str) -> list[str]:
        result = ["--result", str(ctx.logs / f"{name}.json")]
        quick = ["--quick"] if ctx.quick else []
        return [sys.executable, "-m", "metareward.bench.gpu_parts", part, *extra, *result, *quick]

    return command


def read_result(ctx: Context, name: str) -> dict[str, Any]:
    """The JSON object the part wrote; a part that wrote none has failed."""
    path = ctx.logs / f"{name}.json"
    if not path.is_file():
        return {"status": "failed", "reason": "the part exited without writing its result", "figures": {}}
    return json.loads(path.read_text())


def tests_command(ctx: Context, name: str) -> list[str]:
    report = f"--junitxml={ctx.logs / f'{name}.xml'}"
    return [sys.executable, "-m", "pytest", "tests/gpu", "-q", "-rs", "-p", "no:cacheprovider", report]


def read_tests(ctx: Context, name: str) -> dict[str, Any]:
    return read_junit(ctx.logs / f"{name}.xml")


PARTS: tuple[Part, ...] = (
    Part("install", 40, install_command, read_install, no_wheelhouse),
    Part("environment", 30, part_command("environment"), read_result),
    Part("gpu_tests", 130, tests_command, read_tests, exit_code_decides=False),
    Part("scale_lora", 60, part_command("scale", "--variant", "lora"), read_result),
    Part("scale_qlora", 100, part_command("scale", "--variant", "qlora"), read_result),
    Part("loop", 120, part_command("loop"), read_result),
)
NAMES = tuple(part.name for part in PARTS)


def injected(part: Part, ctx: Context) -> list[str] | None:
    """--fail and --hang stand a process that breaks or never ends in for the part's own, to show the rest go on."""
    if part.name in ctx.fail:
        return [sys.executable, "-c", f"import sys; sys.exit('failure injected by --fail {part.name}')"]
    if part.name in ctx.hang:
        return [sys.executable, "-c", "import time; time.sleep(10**6)"]
    return None


def run_limited(command: Sequence[str], env: dict[str, str], limit_s: float, log: Path) -> tuple[int | None, float]:
    """Runs `command` in its own process group, output to `log`; returns (exit code, or None if it ran past
    `limit_s` and the whole group was killed, and seconds). The group dies either way: no stray child of a part
    (a train.py that pytest started, say) outlives it to hold the GPU."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT, start_new_session=True
        )
        try:
            code: int | None = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            code = None
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return code, time.perf_counter() - start


def fast_scratch() -> str | None:
    """/dev/shm where it can hold the 8B checkpoint the 4-bit load reads back (16 GB): RAM beats disk there. Each
    part's temporary files go to a folder of their own, removed when the part ends, killed or not."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and shutil.disk_usage(shm).free > SCRATCH_IN_RAM_BYTES else None


def tail(log: Path, lines: int = 20) -> list[str]:
    return log.read_text(errors="replace").splitlines()[-lines:] if log.is_file() else []


def run_part(part: Part, ctx: Context, limit_s: float) -> dict[str, Any]:
    """One part's result: its own, or failed / timed out with the reason and the tail of its log."""
    reason = None if part.name in ctx.fail | ctx.hang else part.precheck(ctx)
    if reason:
        return {"status": "skipped", "reason": reason, "figures": {}, "seconds": 0.0, "limit_seconds": limit_s}
    log = ctx.logs / f"{part.name}.log"
    for stale in (ctx.logs / f"{part.name}.json", ctx.logs / f"{part.name}.xml"):  # from an earlier check's --logs
        stale.unlink(missing_ok=True)
    command = injected(part, ctx) or part.command(ctx, part.name)
    scratch_dir = tempfile.TemporaryDirectory(
        prefix=f"gpu-check-{part.name}-", dir=fast_scratch(), ignore_cleanup_errors=True
    )
    with scratch_dir as scratch:
        code, seconds = run_limited(command, {**ctx.env, "TMPDIR": scratch}, limit_s, log)
    if code is None:
        result = {"status": "timed_out", "reason": f"no result within its limit of {limit_s:.0f} s", "figures": {}}
    elif code != 0 and part.exit_code_decides:
        last = next((line for line in reversed(tail(log)) if line.strip()), "")
        result = {"status": "failed", "reason": f"exit code {code}: {last.strip()[:300]}", "figures": {}}
    else:
        result = part.read(ctx, part.name)
    if result["status"] in ("failed", "timed_out"):
        result["tail"] = tail(log)
    return {**result, "seconds": seconds, "limit_seconds": limit_s, "log": str(log)}


def part_env(site: Path, quick: bool) -> dict[str, str]:
    """The parts' environment: the wheelhouse's packages first, then the project's source; offline; no GPU in the
    dry run, so that it is the same everywhere."""
    paths = [str(site), str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, **OFFLINE, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "PYTHONUNBUFFERED": "1"}
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["PIP_CONFIG_FILE"] = os.devnull  # a machine-wide index setting must not matter: the install uses no index
    if quick:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_check(parts: Sequence[Part], ctx: Context, limits: dict[str, float], budget_s: float) -> dict[str, Any]:
    """Every part in turn, each within min(its limit, what is left of the budget): one always gets a record."""
    deadline = time.monotonic() + budget_s
    results: dict[str, Any] = {}
    for part in parts:
        left = deadline - time.monotonic()
        if left < MIN_PART_S:
            reason = f"the check's budget of {budget_s:.0f} s was spent before this part"
            results[part.name] = {"status": "skipped", "reason": reason, "figures": {}, "seconds": 0.0}
        else:
            results[part.name] = run_part(part, ctx, min(limits.get(part.name, part.limit_s), left))
        print(gpu_report.line(part.name, results[part.name]), flush=True)
    return results


def limit_pair(text: str) -> tuple[str, float]:
    name, _, seconds = text.partition("=")
    if name not in NAMES or not seconds.replace(".", "", 1).isdigit():
        raise argparse.ArgumentTypeError(f"--limit {text!r}: write PART=SECONDS with PART one of {', '.join(NAMES)}")
    return name, float(seconds)


def part_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown part(s) {', '.join(unknown)}; the parts are {', '.join(NAMES)}")
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m metareward.bench gpu", description=__doc__)
    p.add_argument("--quick", action="store_true", help="the dry run: tiny shapes on CPU, CUDA hidden")
    p.add_argument("--wheelhouse", type=Path, default=REPO_ROOT / "wheelhouse", help="wheels to install (no index)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "gpu", help="folder of the JSON and Markdown")
    p.add_argument("--logs", type=Path, default=None, help="part logs (default outputs/gpu-check/<time>)")
    p.add_argument("--parts", type=part_names, default=list(NAMES), help=f"comma-separated, of {', '.join(NAMES)}")
    p.add_argument("--limit", type=limit_pair, action="append", default=[], help="PART=SECONDS (repeatable)")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, help="seconds for the whole check")
    p.add_argument("--fail", type=part_names, action="append", default=[], help="make these parts fail (a test)")
    p.add_argument("--hang", type=part_names, action="append", default=[], help="make these parts hang (a test)")
    p.add_argument("--commit", default=None, help="the commit, where the tree is no git checkout")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the check; exit 0 when no part failed or timed out (skipped parts are no failure), else 1."""
    args = parser().parse_args(argv)
    started = datetime.now(timezone.utc)
    logs = args.logs or REPO_ROOT / "outputs" / "gpu-check" / started.strftime("%Y-%m-%d_%H-%M-%S")
    logs.mkdir(parents=True, exist_ok=True)
    fail, hang = (frozenset(name for names in given for name in names) for given in (args.fail, args.hang))
    with tempfile.TemporaryDirectory(prefix="gpu-check-site-") as folder:
        site = Path(folder)
        ctx = Context(args.quick, args.wheelhouse, site, logs, part_env(site, args.quick), fail, hang)
        mode = "dry run: tiny shapes on CPU" if args.quick else "CUDA"
        print(f"gpu check ({mode}), budget {args.budget:.0f} s, logs in {logs}", flush=True)
        clock = time.perf_counter()
        results = run_check([p for p in PARTS if p.name in args.parts], ctx, dict(args.limit), args.budget)
    seconds = time.perf_counter() - clock
    checked = gpu_report.new_record(args.quick, args.budget, results, started, seconds, args.commit, args.wheelhouse)
    json_path, md_path = gpu_report.write(checked, args.out)
    print(gpu_report.table(checked))
    print(f"record: {json_path}\n        {md_path}")
    return 0 if all(r["status"] in ("passed", "skipped") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
