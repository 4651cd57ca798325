"""Atomic JSON Lines and JSON files in the run directory: a crash never leaves a half-written artifact."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from metareward.records import from_dict, to_dict

Record = TypeVar("Record")


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, fsync it, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def finite_json(data: Any) -> Any:
    """The same data with NaN and infinities as null: strict JSON has no such numbers, and readers reject them."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite_json(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(value) for value in data]
    return data


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(finite_json(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def write_records(path: Path, records: Iterable[Any]) -> int:
    """Write dataclass records as JSON Lines, atomically. Returns how many were written."""
    lines = [json.dumps(to_dict(record), ensure_ascii=False) for record in records]
    write_text_atomic(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_records(path: Path, record_type: type[Record]) -> list[Record]:
    records = []
    with path.open(encoding="utf-8") as stream:
        for line_number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                records.append(from_dict(record_type, json.loads(line)))
            except (json.JSONDecodeError, TypeError) as error:
                raise ValueError(f"{path}:{line_number}: not a valid {record_type.__name__} ({error})") from None
    return records


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
