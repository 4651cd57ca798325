"""Atomic JSON Lines and JSON files in the run directory: a crash never leaves a half-written artifact; and the one
reader of the JSON Lines files the project writes (`json_lines`).

A full disk (or quota) while writing ends in `ArtifactError` naming the file, with the previous version of the file,
if any, left in place; a damaged file read back on resume ends in `ArtifactError` naming it and what to do.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from metareward.storage.records import from_dict, to_dict

Record = TypeVar("Record")


# What a full device or an exhausted quota raises while writing.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
REDO = "delete it and resume again (resume=true): the run makes it anew"


class ArtifactError(ValueError):
    """A run-directory file could not be written (full disk) or read back (damaged); the message names it."""


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, fsync it, then rename it over `path`: readers see the old file or
    the new one, never part of one."""

    def write(temporary: Path) -> None:
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.write(text)

    write_file_atomic(path, write)


def write_file_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """`write` fills a temporary file beside `path` (with any library: safetensors, torch, matplotlib), which is
    fsynced and renamed over `path`. A failure leaves the previous `path` as it was, and a full disk is one sentence
    (ArtifactError) whatever error type the library raised."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
    except OSError as error:
        raise failed_write(path, error) from None
    temporary = Path(name)
    try:
        write(temporary)
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except Exception as error:  # noqa: BLE001 - any library's error: a full disk becomes a sentence, others stay
        failure = failed_write(path, error)  # before the temporary file goes, while the device is still full
        temporary.unlink(missing_ok=True)
        raise failure from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_folder_atomic(folder: Path, fill: Callable[[Path], None]) -> None:
    """`fill` writes into a hidden folder beside `folder`, which then takes its place: a crash leaves either the
    complete new folder, the old one, or no folder, never part of one (and a hidden leftover the next call clears)."""
    partial = folder.with_name(f".{folder.name}.partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        fill(partial)
        for path in partial.iterdir():
            with open(path, "rb") as stream:
                os.fsync(stream.fileno())
        shutil.rmtree(folder, ignore_errors=True)  # a folder cannot be renamed over a non-empty one
        os.replace(partial, folder)
    except Exception as error:  # noqa: BLE001 - as in write_file_atomic
        failure = failed_write(folder, error)
        shutil.rmtree(partial, ignore_errors=True)
        raise failure from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


# How libraries that do not raise OSError word a full device: safetensors (Rust's io::Error), others' own text.
_FULL_DEVICE_WORDS = ("no space left on device", "disk quota exceeded", "code: 28,", "os error 28", "storagefull")
# A write that failed with at most this much space left on the device is taken for a full disk: torch's checkpoint
# writer says only "file write failed".
NEARLY_FULL_BYTES = 1 << 20


def failed_write(path: Path, error: BaseException) -> BaseException:
    """The sentence for a write that failed on a full device; any other error as it is."""
    if not is_disk_full(path, error):
        return error
    reason = os.strerror(error.errno) if isinstance(error, OSError) and error.errno else "no space left on device"
    return ArtifactError(
        f"no space left on the device while writing {path} ({reason}); nothing half-written was left there: free "
        "some space, then continue the run with resume=true and the same hydra.run.dir"
    )


def is_disk_full(path: Path, error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno in DISK_FULL
    if any(words in str(error).lower() for words in _FULL_DEVICE_WORDS):
        return True
    try:
        return shutil.disk_usage(next(p for p in (path, *path.parents) if p.exists())).free <= NEARLY_FULL_BYTES
    except (OSError, StopIteration):
        return False


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


def json_lines(path: Path, what: str = "JSON value", redo: str = REDO) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line of a JSON Lines file the project wrote, in order. A line that is
    not JSON raises ArtifactError naming `path:line` and `what` it should be, a file that is not UTF-8 names the
    file; both end with `redo`, what to do about it. (A user's data files are read by `metareward.storage.datafiles`.)"""
    try:
        with path.open(encoding="utf-8") as stream:
            for number, line in enumerate(stream, start=1):
                if line.strip():
                    try:
                        value = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise damaged_line(path, number, what, error, redo) from None
                    yield number, value
    except UnicodeDecodeError:
        raise ArtifactError(f"{path} is damaged: not UTF-8 text; {redo}") from None


def damaged_line(path: Path, number: int, what: str, error: Exception, redo: str = REDO) -> ArtifactError:
    return ArtifactError(
        f"{path}:{number} is damaged: not a valid {what} ({type(error).__name__}: {_first_line(error)}); {redo}"
    )


def read_json_lines(path: Path, limit: int | None = None, redo: str = REDO) -> list[Any]:
    """The values of a JSON Lines file the project wrote (its first `limit` when given); see `json_lines`."""
    values = []
    for _, value in json_lines(path, redo=redo):
        if limit is not None and len(values) >= limit:
            break
        values.append(value)
    return values


def read_records(path: Path, record_type: type[Record]) -> list[Record]:
    """The records of a JSON Lines file; a line that does not parse as one raises ArtifactError naming it."""
    records = []
    for number, row in json_lines(path, record_type.__name__):
        try:
            records.append(from_dict(record_type, row))
        except (TypeError, KeyError, ValueError, AttributeError) as error:
            raise damaged_line(path, number, record_type.__name__, error) from None
    return records


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{path} is damaged: not valid JSON ({_first_line(error)}); {REDO}") from None


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
