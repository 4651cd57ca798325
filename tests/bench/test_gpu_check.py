"""The GPU check as a user runs it (`python -m metareward.bench gpu`), in its CPU dry run, so the command never rots:
every part runs or says why not, a part that fails or hangs leaves the others running, and the record is written
(to a temporary folder: a dry run's figures are no GPU's). Plus its pure pieces: the pytest report, the wheel pins.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import REPO_ROOT

from metareward.bench import gpu_check
from metareward.bench.junit import read_junit
from metareward.bench.wheelhouse import Pin, WheelhouseError, read_pins, report


def write_wheel(folder: Path, name: str = "gpucheck_probe", version: str = "0.1") -> Path:
    """A minimal pure-Python wheel, so the offline install runs without the real wheelhouse."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "VALUE = 1\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def check(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """`python -m metareward.bench gpu --quick` into tmp_path; the completed process and the JSON record."""
    out, wheelhouse = tmp_path / "out", tmp_path / "wheelhouse"
    write_wheel(wheelhouse)
    command = [sys.executable, "-m", "metareward.bench", "gpu", "--quick", "--out", str(out)]
    command += ["--logs", str(tmp_path / "logs"), "--wheelhouse", str(wheelhouse), *args]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    return done, json.loads((out / "dry-run.json").read_text())


@pytest.mark.slow
def test_the_dry_run_runs_every_part_or_says_why_not(tmp_path: Path) -> None:
    done, record = check(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert record["check"] == "metareward-gpu-check" and record["dry_run"] is True
    assert list(record["parts"]) == list(gpu_check.NAMES)
    for name, part in record["parts"].items():
        assert part["status"] in ("passed", "skipped"), (name, part)
        assert part["status"] == "passed" or part["reason"], name
        assert 0 <= part["seconds"] <= part["limit_seconds"] + 5, name
    parts = record["parts"]
    assert parts["install"]["figures"]["wheels"] == ["gpucheck_probe-0.1-py3-none-any.whl"]
    assert parts["environment"]["figures"]["cuda_available"] is False
    assert "needs a CUDA GPU" in parts["gpu_tests"]["reason"]
    assert parts["gpu_tests"]["figures"]["counts"]["skipped"] >= 5
    assert parts["scale_lora"]["figures"]["step_seconds"] > 0
    assert "CUDA" in parts["scale_qlora"]["reason"]
    loop = parts["loop"]["figures"]
    assert loop["phase_seconds"]["train"] > 0 and "trainer=cpu" in loop["overrides"]
    markdown = (tmp_path / "out" / "dry-run.md").read_text()
    assert markdown.startswith("# DRY RUN on CPU") and "| scale_lora | passed |" in markdown
    assert all(f"\n{name} " in done.stdout for name in gpu_check.NAMES)  # the printed table


def test_a_failing_and_a_hanging_part_leave_the_others_running(tmp_path: Path) -> None:
    args = ("--parts", "install,environment,scale_lora", "--hang", "install", "--limit", "install=2")
    done, record = check(tmp_path, *args, "--fail", "environment")
    assert done.returncode == 1
    install, environment, scale = (record["parts"][name] for name in ("install", "environment", "scale_lora"))
    assert install["status"] == "timed_out" and "limit of 2 s" in install["reason"]
    assert install["seconds"] < 10  # killed at its limit, not waited for
    assert environment["status"] == "failed" and "failure injected by --fail environment" in environment["reason"]
    assert environment["tail"]
    assert scale["status"] == "passed" and scale["figures"]["step_seconds"] > 0


def test_a_spent_budget_skips_the_remaining_parts(tmp_path: Path) -> None:
    done, record = check(tmp_path, "--parts", "environment,loop", "--hang", "environment", "--budget", "6")
    assert done.returncode == 1
    assert record["parts"]["environment"]["status"] == "timed_out"
    assert record["parts"]["loop"] == {
        "status": "skipped",
        "reason": "the check's budget of 6 s was spent before this part",
        "figures": {},
        "seconds": 0.0,
    }


def test_unknown_parts_are_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        gpu_check.main(["--parts", "install,warp"])
    assert stopped.value.code == 2
    assert "unknown part(s) warp; the parts are install, environment" in capsys.readouterr().err


def test_the_pytest_report_says_which_tests_ran_failed_or_were_skipped(tmp_path: Path) -> None:
    report_xml = tmp_path / "report.xml"
    cases = (
        '<testcase classname="tests.gpu.test_a" name="test_ok" time="1.5"/>'
        '<testcase classname="tests.gpu.test_a" name="test_no_gpu" time="0"><skipped message="needs a CUDA GPU"/>'
        "</testcase>"
    )
    report_xml.write_text(f"<testsuites><testsuite>{cases}</testsuite></testsuites>")
    passed = read_junit(report_xml)
    assert passed["status"] == "passed" and passed["figures"]["counts"] == {"passed": 1, "failed": 0, "skipped": 1}
    broken = '<testcase classname="tests.gpu.test_b" name="test_bad" time="2"><failure message="boom"/></testcase>'
    report_xml.write_text(f"<testsuites><testsuite>{cases}{broken}</testsuite></testsuites>")
    assert read_junit(report_xml)["reason"] == "1 failed: test_b::test_bad"
    skipped_only = cases.split("/>", 1)[1]
    report_xml.write_text(f"<testsuites><testsuite>{skipped_only}</testsuite></testsuites>")
    assert read_junit(report_xml)["reason"] == "all 1 skipped: needs a CUDA GPU"
    assert read_junit(tmp_path / "absent.xml")["status"] == "failed"


def test_the_wheelhouse_pins_one_version_of_each_and_fits_the_budget(tmp_path: Path) -> None:
    pins = read_pins(REPO_ROOT / "requirements" / "gpu-wheelhouse.txt")
    names = [pin.name for pin in pins]
    assert len(names) == len(set(names)) and {"hydra-core", "omegaconf", "bitsandbytes", "pytest"} <= set(names)
    assert "bitsandbytes" not in [
        p.name for p in read_pins(REPO_ROOT / "requirements" / "gpu-wheelhouse.txt", ["bitsandbytes"])
    ]
    assert Pin("antlr4-python3-runtime", "4.9.3").matches(Path("antlr4_python3_runtime-4.9.3-py3-none-any.whl"))
    assert not Pin("hydra-core", "1.3.8").matches(Path("hydra_core-1.3.2-py3-none-any.whl"))
    (tmp_path / "bad.txt").write_text("hydra-core>=1.3\n")
    with pytest.raises(WheelhouseError, match="bad.txt:1: 'hydra-core>=1.3' is not NAME==VERSION"):
        read_pins(tmp_path / "bad.txt")
    wheel = write_wheel(tmp_path / "wh")
    assert report([wheel], 1024, 1.0)[1] is True
    text, fits = report([wheel], 2 * 1024 * 1024, 1.0)
    assert not fits and "together, budget 1 MiB" in text
