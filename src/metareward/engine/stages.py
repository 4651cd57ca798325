"""Stage files of an iteration, reused on resume.

A stage is complete when its records file exists: the sidecar with its counts is written first, then the
records, each atomically, so a crash mid-stage leaves no records file and the stage is simply redone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from metareward.storage.artifacts import ArtifactError, read_json, read_records, write_json, write_records
from metareward.storage.records import PhaseResult

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
            result = read_stage(records_path, counts_path, record_type)
            self.reused.append(name)
            log.info("reusing the finished stage %s", records_path)
            return result
        result = compute()
        if self.write:
            write_json(counts_path, {"drops": result.drops, "parse_failures": result.parse_failures})
            write_records(records_path, result.records)
        return result


def read_stage(records_path: Path, counts_path: Path, record_type: type) -> PhaseResult:
    """A finished stage read back; a damaged file of it raises ArtifactError saying how to redo the stage."""
    redo = f"delete {records_path.name} and {counts_path.name} in {records_path.parent} and resume again to redo it"
    try:
        counts = read_json(counts_path)
        drops, failures = counts["drops"], counts["parse_failures"]
        if not isinstance(drops, dict) or not isinstance(failures, (int, float)):
            raise ArtifactError(f"{counts_path} is damaged: its counts have the wrong types")
        records = read_records(records_path, record_type)
    except ArtifactError as error:
        raise ArtifactError(f"a finished stage is damaged: {_cause(error)}; {redo}") from None
    except (KeyError, TypeError):
        raise ArtifactError(f"a finished stage is damaged: {counts_path} lacks its counts; {redo}") from None
    return PhaseResult(records, drops, failures)


def _cause(error: ArtifactError) -> str:
    """The damaged file and why, without the generic advice (the stage's own advice follows)."""
    return str(error).split("; ")[0]
