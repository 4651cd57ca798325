"""Catching deprecations our own code causes: a DeprecationWarning or FutureWarning raised by an API that a frame of
`src/metareward` called, and the deprecation notices transformers logs instead of warning (`past_key_values`). A
library's own use of another deprecated API (PEFT reading `is_gradient_checkpointing`, Lightning torch's `LeafSpec`)
is the library's to fix, not ours."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import metareward

OUR_CODE = str(Path(metareward.__file__).parent)
OUR_TESTS = str(Path(__file__).parent)
MODULE_PLUMBING = str(Path("torch", "nn", "modules", "module.py"))
DEPRECATIONS = (DeprecationWarning, FutureWarning, PendingDeprecationWarning)


def _ours(frame) -> str | None:
    if frame is not None and frame.f_code.co_filename.startswith(OUR_CODE):
        return f"{Path(frame.f_code.co_filename).relative_to(Path(OUR_CODE).parent)}:{frame.f_lineno}"
    return None


def _up(frame, steps: int):
    for _ in range(steps):
        frame = frame.f_back if frame is not None else None
    return frame


def _past_plumbing(frame):
    """The first frame from `frame` outwards that is not torch's module-call plumbing (`model(...)` reaches
    `forward` through two frames of torch/nn/modules/module.py)."""
    while frame is not None and frame.f_code.co_filename.endswith(MODULE_PLUMBING):
        frame = frame.f_back
    return frame


def warning_caller(warning_frame, stacklevel: int) -> str | None:
    """`file:line` when our code called the deprecated API: the frame the warning is attributed to (a library that
    passes stacklevel=2 points at its caller), or the caller of that frame (one that warns from inside the
    deprecated function itself), past torch's module-call plumbing either way."""
    attributed = _past_plumbing(_up(warning_frame, max(stacklevel, 1) - 1))
    return _ours(attributed) or _ours(_past_plumbing(_up(attributed, 1)))


def logging_caller() -> str | None:
    """`file:line` when one of the few frames that called a deprecation log is ours (transformers logs the renamed
    `past_key_values` from the model's forward wrapper, a few frames below the caller)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith((logging.__file__.rsplit("/", 1)[0], OUR_TESTS)):
        frame = frame.f_back
    return next((site for step in range(6) if (site := _ours(_up(frame, step)))), None)


class _DeprecationLog(logging.Handler):
    def __init__(self, found: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.found = found

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "deprecated" in message.lower() and (site := logging_caller()):
            self.found.append(f"{site}: {message}")


@contextmanager
def deprecations_from_our_code() -> Iterator[list[str]]:
    """Collects, while open, every deprecation our code causes as `file:line: message`."""
    found: list[str] = []
    original = warnings.warn

    def warn(message, category=None, stacklevel=1, source=None, **kwargs):
        kind = category or (type(message) if isinstance(message, Warning) else UserWarning)
        if issubclass(kind, DEPRECATIONS) and (site := warning_caller(sys._getframe(1), stacklevel)):
            found.append(f"{site}: {message}")
        return original(message, category, stacklevel + 1, source, **kwargs)

    handler = _DeprecationLog(found)
    loggers = [logging.getLogger(name) for name in ("transformers", "peft", "lightning", "lightning.pytorch")]
    levels = [logger.level for logger in loggers]
    warnings.warn = warn
    for logger in loggers:
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.WARNING:  # a benchmark silences transformers below ERROR
            logger.setLevel(logging.WARNING)
    try:
        yield found
    finally:
        warnings.warn = original
        for logger, level in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(level)
