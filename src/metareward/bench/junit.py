"""The GPU check's reading of a pytest run: pytest's JUnit XML report, turned into one part result.

Read from the report rather than pytest's exit code because the code cannot tell "all skipped: no GPU here" from
"all passed", and the record should say which test failed or was skipped, and why.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

OUTCOMES = ("failure", "error", "skipped")


def outcome(case: ET.Element) -> tuple[str, str | None]:
    """("passed" | "failed" | "skipped", the message pytest gave for it)."""
    for tag in OUTCOMES:
        found = case.find(tag)
        if found is not None:
            message = (found.get("message") or found.text or "").strip().splitlines()
            return ("skipped" if tag == "skipped" else "failed"), (message[0][:300] if message else tag)
    return "passed", None


def read_junit(path: Path) -> dict[str, Any]:
    """The part result: passed when a test passed and none failed; skipped when every test was skipped (the
    reasons, each once); failed when one failed, errored, or no report was written."""
    if not path.is_file():
        return {
            "status": "failed",
            "reason": "pytest wrote no report (it broke before running the tests)",
            "figures": {},
        }
    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        status, message = outcome(case)
        module = case.get("classname", "").rsplit(".", 1)[-1]
        name = f"{module}::{case.get('name')}"
        tests.append({"test": name, "status": status, "seconds": float(case.get("time") or 0), "message": message})
    counts = Counter(test["status"] for test in tests)
    figures = {"counts": {key: counts.get(key, 0) for key in ("passed", "failed", "skipped")}, "tests": tests}
    if counts["failed"]:
        names = ", ".join(t["test"] for t in tests if t["status"] == "failed")
        return {"status": "failed", "reason": f"{counts['failed']} failed: {names}", "figures": figures}
    if not counts["passed"]:
        reasons = sorted({t["message"] or "" for t in tests if t["status"] == "skipped"})
        reason = f"all {len(tests)} skipped: " + "; ".join(reasons) if tests else "no tests collected"
        return {"status": "skipped", "reason": reason, "figures": figures}
    return {"status": "passed", "reason": None, "figures": figures}
