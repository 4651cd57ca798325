"""Print what a re-resolved lock changes: `python requirements/lock_changes.py OLD NEW` lists the packages added,
removed and moved to another version (one per line), or says that nothing changed."""

from __future__ import annotations

import re
import sys
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)")


def pins(path: Path) -> dict[str, str]:
    """Package name (normalised) -> pinned version, for every `name==version` line of a requirements file."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        match = PIN.match(line)
        if match:
            found[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return found


def changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    lines = [f"+ {name}=={new[name]}" for name in sorted(new.keys() - old.keys())]
    lines += [f"- {name}=={old[name]}" for name in sorted(old.keys() - new.keys())]
    lines += [
        f"~ {name} {old[name]} -> {new[name]}" for name in sorted(old.keys() & new.keys()) if old[name] != new[name]
    ]
    return lines


if __name__ == "__main__":
    found = changes(pins(Path(sys.argv[1])), pins(Path(sys.argv[2])))
    print("\n".join(found) if found else "the lock is unchanged: every package resolves to the version it pins")
