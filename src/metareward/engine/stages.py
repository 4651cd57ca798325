"""Stage files of an iteration, reused on resume.

A stage is complete when its records file exists: the sidecar with its counts is written first, then the
records, each atomically, so a crash mid-stage leaves no records file and the stage is simply redone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from metareward.artifacts import read_json, read_records, write_json, write_records
from metareward.engine.phases import PhaseResult

log = logging.getLogger(__name__)


@dataclass
class StageStore:
    directory: Path
    reuse: bool = False
    write: bool = True
    reused: list[str] = field(default_factory=list)

    def records_path(self, name: str) -> Path:
        return self.directory / f"{name}.jsonl"

    def run(self, name: str, record_type: type, compute: Callable[[], PhaseResult]) -> PhaseResult:
        """The stage's result: read back from its files when resuming and they exist, else computed and saved."""
        records_path, counts_path = self.records_path(name), self.directory / f"{name}.counts.json"
        if self.reuse and records_path.is_file() and counts_path.is_file():
            counts = read_json(counts_path)
            self.reused.append(name)
            log.info("reusing the finished stage %s", records_path)
            return PhaseResult(read_records(records_path, record_type), counts["drops"], counts["parse_failures"])
        result = compute()
        if self.write:
            write_json(counts_path, {"drops": result.drops, "parse_failures": result.parse_failures})
            write_records(records_path, result.records)
        return result
