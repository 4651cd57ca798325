"""The GPU check's record, made, written as JSON (every figure) and Markdown (what a reader needs), and printed.

The file names hold the date and the GPU, so records of several machines sit side by side in docs/gpu/; a dry run
is written as dry-run.json / dry-run.md and says so in its first line, so CPU figures are never read as a GPU's.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False)


def commit(given: str | None) -> dict[str, Any]:
    """The checkout's commit and whether it had changes; `given` where the tree is no git checkout."""
    if given:
        return {"commit": given, "source": "--commit"}
    try:
        head, status = (git(*args) for args in (("rev-parse", "HEAD"), ("status", "--porcelain")))
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "source": "no git"}
    if head.returncode != 0:
        return {"commit": None, "source": "not a git checkout"}
    return {"commit": head.stdout.strip(), "source": "git", "dirty": bool(status.stdout.strip())}


def new_record(
    dry_run: bool,
    budget_s: float,
    parts: dict[str, Any],
    started: datetime,
    seconds: float,
    given_commit: str | None,
    wheelhouse: Path,
) -> dict[str, Any]:
    """The whole check as one JSON-able object: where and when it ran, on which commit and wheels, each part."""
    manifest = wheelhouse / "manifest.json"
    return {
        "check": "metareward-gpu-check",
        "format": 1,
        "dry_run": dry_run,
        "started": started.isoformat(timespec="seconds"),
        "seconds": seconds,
        "budget_seconds": budget_s,
        "commit": commit(given_commit),
        "host": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "wheelhouse": json.loads(manifest.read_text()) if manifest.is_file() else None,
        "parts": parts,
    }


def _f(value: Any, digits: int = 2, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _install(fig: dict[str, Any]) -> str:
    return f"{len(fig['wheels'])} wheels, {fig['installed_mb']:.0f} MB installed"


def _environment(fig: dict[str, Any]) -> str:
    v = fig["versions"]
    where = f"{fig['gpu']} x{fig['gpu_count']}, CUDA {fig['torch_cuda']}" if fig.get("gpu") else "no CUDA"
    text = f"{where}; torch {v['torch']}, transformers {v['transformers']}, Lightning {v['lightning']}"
    return text + "".join(f"; {problem}" for problem in fig["out_of_range"])


def _tests(fig: dict[str, Any]) -> str:
    return ", ".join(f"{count} {key}" for key, count in fig["counts"].items())


def _scale(fig: dict[str, Any]) -> str:
    mfu = "n/a" if fig.get("mfu") is None else f"{100 * fig['mfu']:.1f}%"
    step = f"{fig['step_seconds']:.3f} s/step, {fig['tokens_per_s']:.0f} tok/s, MFU {mfu}"
    return f"{step}, peak {_f(fig.get('peak_memory_gb'), 1, ' GB')}"


def _loop(fig: dict[str, Any]) -> str:
    phases = ", ".join(f"{name} {seconds:.1f}" for name, seconds in fig["phase_seconds"].items())
    peak = _f(fig.get("peak_gpu_memory_gb"), 1, " GB")
    return f"iteration {_f(fig['iteration_seconds'], 1, ' s')} ({phases}), peak GPU {peak}"


SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    "install": _install,
    "environment": _environment,
    "gpu_tests": _tests,
    "scale_lora": _scale,
    "scale_qlora": _scale,
    "loop": _loop,
}


def summary(name: str, result: dict[str, Any]) -> str:
    """One line of figures for a passed part, else its reason."""
    if result["status"] != "passed" or not result["figures"]:
        return str(result.get("reason") or "")
    return SUMMARIES[name](result["figures"])


def line(name: str, result: dict[str, Any]) -> str:
    """What is printed as each part ends."""
    return f"  {name}: {result['status']} in {result.get('seconds', 0):.1f} s: {summary(name, result)}"


def rows(record: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [
        (name, r["status"], f"{r.get('seconds', 0):.0f} / {r.get('limit_seconds', 0):.0f}", summary(name, r))
        for name, r in record["parts"].items()
    ]


def table(record: dict[str, Any]) -> str:
    """The parts as a plain-text table, for the terminal."""
    body = [("part", "status", "s / limit", "figures or reason"), *rows(record)]
    widths = [max(len(row[i]) for row in body) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3] for row in body)


def _md_table(header: tuple[str, ...], body: list[tuple[Any, ...]]) -> list[str]:
    cells = [header, tuple("---" for _ in header), *body]
    return ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in cells]


def details(record: dict[str, Any]) -> list[str]:
    """Per-test outcomes, the scale figures and the loop's phases, where those parts passed."""
    parts, out = record["parts"], []
    tests = parts.get("gpu_tests", {}).get("figures", {}).get("tests", [])
    if tests:
        body = [(t["test"], t["status"], f"{t['seconds']:.1f}", t["message"] or "") for t in tests]
        out += ["", "## tests/gpu", "", *_md_table(("test", "status", "s", "message"), body)]
    scale = [(name[6:], parts[name]["figures"]) for name in ("scale_lora", "scale_qlora") if _passed(parts, name)]
    if scale:
        head = ("variant", "s/step", "tokens/s", "MFU", "peak GB", "TFLOP/step", "build s")
        body = [
            (v, _f(f["step_seconds"], 3), _f(f["tokens_per_s"], 0), _f(f["mfu"], 3), _f(f["peak_memory_gb"], 1))
            + (_f(f["model_tflops_per_step"], 1), _f(f["build_seconds"], 1))
            for v, f in scale
        ]
        shape = scale[0][1]
        title = f"## bench scale: {shape['shape']}, {shape['pairs']} pairs x {shape['prompt_tokens']} + 2 x "
        out += ["", title + f"{shape['completion_tokens']} tokens", "", *_md_table(head, body)]
    if _passed(parts, "loop"):
        fig = parts["loop"]["figures"]
        body = [(name, f"{seconds:.1f}") for name, seconds in fig["phase_seconds"].items()]
        out += ["", f"## One iteration of the loop: {fig['model']} ({fig['parameters'] / 1e6:,.1f} M parameters)", ""]
        out += [*_md_table(("phase", "s"), body), "", f"`python train.py {' '.join(fig['overrides'])}`"]
    return out


def _passed(parts: dict[str, Any], name: str) -> bool:
    return parts.get(name, {}).get("status") == "passed" and bool(parts[name]["figures"])


def markdown(record: dict[str, Any]) -> str:
    env = record["parts"].get("environment", {}).get("figures", {})
    dry = "DRY RUN on CPU, tiny shapes: these are no GPU figures"
    head = dry if record["dry_run"] else f"GPU check: {env.get('gpu', 'no GPU found')}"
    source = record["commit"]
    dirty = " (with uncommitted changes)" if source.get("dirty") else ""
    lines = [
        f"# {head}",
        "",
        f"- started {record['started']}, {record['seconds']:.0f} s of a {record['budget_seconds']:.0f} s budget",
        f"- commit {source.get('commit') or 'unknown'}{dirty} ({source['source']})",
        f"- Python {env.get('python', record['host']['python'])}, {record['host']['platform']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in env.get('versions', {}).items() if v)}",
        "",
        *_md_table(("part", "status", "s / limit", "figures or reason"), rows(record)),
        *details(record),
    ]
    return "\n".join(lines) + "\n"


def file_stem(record: dict[str, Any]) -> str:
    if record["dry_run"]:
        return "dry-run"
    gpu = record["parts"].get("environment", {}).get("figures", {}).get("gpu", "unknown-gpu")
    return f"{record['started'][:10]}-{re.sub(r'[^a-z0-9]+', '-', gpu.lower()).strip('-')}"


def write(record: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Writes <out>/<stem>.json and .md; returns both paths."""
    out.mkdir(parents=True, exist_ok=True)
    stem = file_stem(record)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(record, indent=1, default=str) + "\n")  # parts in the order they ran
    md_path.write_text(markdown(record))
    return json_path, md_path
