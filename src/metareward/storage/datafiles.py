"""Reading the JSON Lines files a user hands over (prompt pools, evaluation data, IFT/EFT data) so that every shape
of bad file ends in one sentence naming the file, the line and the fix, and every form of good file is accepted.

Accepted: UTF-8 with or without a byte-order mark, LF or CRLF line endings, blank lines anywhere. Refused: a path
that is a directory or missing, bytes that are not UTF-8 text, a line longer than `MAX_LINE_CHARS` (a whole data
set dumped on one line, or a binary file), a line that is not JSON or not a JSON object, and fields of the wrong
JSON type.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

# One JSONL row is an instruction with its answers and judgments: a few hundred KB at most. A longer line is a
# mistake (a JSON array of the whole data set, a binary file) and reading it whole would cost its size in memory.
MAX_LINE_CHARS = 1_000_000


def file_problem(path: Path, key: str, what: str = "a JSON Lines file") -> str | None:
    """Why `path` (named by the config key `key`) cannot be read as a data file, or None when it can."""
    if path.is_dir():
        return f"{key}={str(path)!r} is a directory; point it at {what}"
    if not path.is_file():
        return f"{key}={str(path)!r} does not exist; point it at {what}"
    return None


def iter_json_objects(path: Path, error: type[Exception]) -> Iterator[tuple[int, dict | str]]:
    """(line number, row) for every non-blank line; a line that is not JSON, or JSON but not an object, yields a
    sentence saying so instead of the row, so callers may skip or refuse it. A file that is not text at all raises
    `error`, naming the file and the line."""
    try:
        with path.open(encoding="utf-8-sig", newline=None) as stream:
            number = 0
            while True:
                line = stream.readline(MAX_LINE_CHARS + 1)
                if not line:
                    return
                number += 1
                if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
                    raise error(
                        f"{path}:{number}: a line longer than {MAX_LINE_CHARS:,} characters; the file must hold one "
                        "JSON object per line (is it a JSON array or a binary file?)"
                    )
                if line.strip():
                    yield number, _object(path, number, line, error)
    except UnicodeDecodeError as decode:
        raise error(f"{path}: is not UTF-8 text ({decode.reason}); save the file as UTF-8 JSON Lines") from None


def json_objects(path: Path, error: type[Exception]) -> Iterator[tuple[int, dict]]:
    """Like `iter_json_objects`, for files where any bad line stops the run: it raises `error` with its sentence."""
    for number, row in iter_json_objects(path, error):
        if isinstance(row, str):
            raise error(row)
        yield number, row


def _object(path: Path, number: int, line: str, error: type[Exception]) -> dict | str:
    if "\x00" in line:
        raise error(f"{path}:{number}: holds NUL bytes, so it is not a text file; point the config at a JSONL file")
    try:
        row = json.loads(line)
    except json.JSONDecodeError as decode:
        return f"{path}:{number}: not valid JSON ({decode.msg})"
    if not isinstance(row, dict):
        return f"{path}:{number}: expected a JSON object, found {json_type(row)}"
    return row


def json_type(value: object) -> str:
    """The JSON name of a value's type, as a user sees it in the file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "an object"


def text_field_problem(row: dict, name: str, where: str, required: bool = True) -> str | None:
    """Why `row[name]` is not usable text (missing, or another JSON type), or None."""
    if name not in row or row[name] is None:
        return f"{where}: missing the text field {name!r}" if required else None
    if not isinstance(row[name], str):
        return f"{where}: the field {name!r} holds {json_type(row[name])}, not text"
    return None


def id_problem(row: dict, where: str) -> str | None:
    """An `id` must be text or a whole number (numbers are read as their text)."""
    value = row.get("id")
    if value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return None
    return f"{where}: the field 'id' holds {json_type(value)}; ids must be text or whole numbers"
