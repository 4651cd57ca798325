"""Each setting's rule, stated once beside its dataclass field, and the one walker that reads a settings dataclass
from the raw config by those rules:

    num_iterations: int = setting("num_iterations", Number(int, 1))

`read` takes every field's value from the config node by its key, so a value of the wrong type is named by its key
(`num_iterations=two`) together with every other problem, instead of stopping the first `int(...)` that meets it.
`field_problems` checks an instance made in Python against the same rules. The pure core states its ranges with
these rules too, so nothing of the config system (omegaconf) is imported until a config is read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar

T = TypeVar("T")
UNUSABLE: Any = type("Unusable", (), {"__repr__": lambda self: "UNUSABLE"})()  # a value of the wrong type
_ABSENT = object()
_SETTING = "metareward.setting"


class Rule:
    """How one setting is read: `read(key, raw)` gives its value (UNUSABLE when the type is wrong, which keeps the
    group that holds it from being built) and its problems, one sentence each naming `key`."""

    def read(self, key: str, raw: Any) -> tuple[Any, list[str]]:
        raise NotImplementedError

    def check(self, key: str, value: Any) -> list[str]:
        """The problems of a value set in Python rather than read from a config."""
        return self.read(key, value)[1]


@dataclass(frozen=True)
class Number(Rule):
    """An int or float in [low, high] (an end is open when its flag says so; None: no bound), or null when
    `nullable`. `reason` says why the range is what it is, after the range in the message."""

    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False
    reason: str = ""

    def read(self, key: str, raw: Any) -> tuple[Any, list[str]]:
        problem = self.type_problem(key, raw)
        if problem or raw is None:
            return (UNUSABLE, [problem]) if problem else (None, [])
        value = self.kind(raw)
        return value, [] if self.holds(value) else [self.range_problem(f"{key}={value}")]

    def type_problem(self, key: str, value: Any) -> str | None:
        if value is None:
            return None if self.nullable else f"{key} is null; it needs a number"
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and (self.kind is float or isinstance(value, int) or float(value).is_integer()):
            return None
        what = "a whole number" if self.kind is int else "a number"
        return f"{key}={value!r} is not {what}; set {key} to {what}" + (" or null" if self.nullable else "")

    def holds(self, value: Any) -> bool:
        """Whether `value` has this type and lies in this range (a guard of code called from Python uses it)."""
        if value is None or self.type_problem("", value):
            return value is None and self.nullable
        number = float(value)
        low_ok = self.low is None or (number > self.low if self.low_open else number >= self.low)
        high_ok = self.high is None or (number < self.high if self.high_open else number <= self.high)
        return low_ok and high_ok and not math.isnan(number)

    def range_problem(self, shown: str) -> str:
        """`<shown> must be <range>[: reason]`; `shown` names the value (`pairs.rho=0.8`)."""
        return f"{shown} must be {self.describe()}" + (f": {self.reason}" if self.reason else "")

    def describe(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {_shown(self.low)}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {_shown(self.high)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{_shown(self.low)}, {_shown(self.high)}{right}"


def _shown(bound: float | None) -> str:
    return str(int(bound)) if bound is not None and float(bound).is_integer() else str(bound)


COUNT = Number(int, 1)
POSITIVE = Number(float, 0, low_open=True)
NON_NEGATIVE = Number(float, 0)


@dataclass(frozen=True)
class Choice(Rule):
    """One of `options` (None among them for an optional choice); any other value is kept and reported."""

    options: tuple[Any, ...]

    def read(self, key: str, raw: Any) -> tuple[Any, list[str]]:
        return raw, [] if raw in self.options else [f"{key}={raw!r} is not one of {list(self.options)}"]


@dataclass(frozen=True)
class Flag(Rule):
    """true or false (a YAML boolean; `yes`, 1 or a word are not read as one)."""

    def read(self, key: str, raw: Any) -> tuple[Any, list[str]]:
        if isinstance(raw, bool):
            return raw, []
        return UNUSABLE, [f"{key}={raw!r} is not true or false; set {key} to true or false"]


FLAG = Flag()


@dataclass(frozen=True)
class Fixed(Rule):
    """A setting the loop relies on: one of `options` (the first is what to write), `reason` saying why."""

    options: tuple[Any, ...]
    reason: str

    def read(self, key: str, raw: Any) -> tuple[Any, list[str]]:
        if any(raw == option and type(raw) is type(option) for option in self.options):
            return raw, []
        return raw, [f"{key}={raw!r} breaks the loop ({self.reason}); leave it at {self.options[0]!r}"]


@dataclass(frozen=True)
class Value(Rule):
    """Any value, made plain by `convert` (str, bool, tuple, ...); no range."""

    convert: Callable[[Any], Any] = lambda value: value

    def read(self, key: str, raw: Any) -> tuple[Any, list[str]]:
        try:
            return self.convert(raw), []
        except (TypeError, ValueError) as error:
            return UNUSABLE, [f"{key}={raw!r} cannot be read ({error})"]


@dataclass(frozen=True)
class Texts(Rule):
    """A list of strings, each made plain by `clean` (null: none). A lone string is refused: read as a list it would
    be its characters."""

    example: str
    clean: Callable[[str], str] = str

    def read(self, key: str, raw: Any) -> tuple[Any, list[str]]:
        if raw is None:
            return (), []
        if isinstance(raw, str) or not isinstance(raw, Sequence):  # a ListConfig is a Sequence
            return UNUSABLE, [f"{key}={raw!r} is not a list; write it as [{self.example}]"]
        return tuple(self.clean(str(item)) for item in raw), []


@dataclass(frozen=True)
class Listed(Rule):
    """A list whose entries each follow `entry`; null is allowed unless `null_fix` says what to write instead."""

    entry: Number
    null_fix: str = ""

    def read(self, key: str, raw: Any) -> tuple[Any, list[str]]:
        if raw is None:
            return (UNUSABLE, [f"{key} is null; {self.null_fix}"]) if self.null_fix else (None, [])
        if not isinstance(raw, Sequence) or isinstance(raw, str):  # a ListConfig is a Sequence
            return UNUSABLE, [f"{key}={raw!r} is not a list; write it as [a, b, ...] or null"]
        types = [p for p in (self.entry.type_problem(f"{key} entry", item) for item in raw) if p]
        if types:
            return UNUSABLE, types
        values = tuple(None if item is None else self.entry.kind(item) for item in raw)  # null: a nullable entry
        return values, [self.entry.range_problem(f"{key} entry {v}") for v in values if not self.entry.holds(v)]


@dataclass(frozen=True)
class Group(Rule):
    """A nested settings dataclass, its fields' keys read under this one's ("" reads them from the same node)."""

    cls: type

    def read(self, key: str, raw: Any) -> tuple[Any, list[str]]:
        if key and not isinstance(raw, Mapping):
            return UNUSABLE, [f"{key}={raw!r} is not a section; set the keys below it one by one ({key}.<name>=...)"]
        return read(self.cls, raw, key)

    def check(self, key: str, value: Any) -> list[str]:
        return field_problems(value, key)


@dataclass(frozen=True)
class Setting:
    key: str
    rule: Rule


def setting(key: str, rule: Rule, default: Any = MISSING, default_factory: Any = MISSING) -> Any:
    """A dataclass field read from the config at `key` (under its group's key) by `rule`, its one statement."""
    return field(default=default, default_factory=default_factory, metadata={_SETTING: Setting(key, rule)})


def settings_of(cls: Any, prefix: str = "") -> Iterator[tuple[str, str, Setting]]:
    """(field name, full key, setting) of every field of the dataclass `cls` read from the config."""
    for item in fields(cls):
        found = item.metadata.get(_SETTING)
        if found is not None:
            yield item.name, _joined(prefix, found.key), found


def rules_of(cls: type, prefix: str = "") -> Iterator[tuple[str, Rule]]:
    """(full key, rule) of every setting of `cls`, nested groups' settings included."""
    for _, key, found in settings_of(cls, prefix):
        if isinstance(found.rule, Group):
            yield from rules_of(found.rule.cls, key)
        else:
            yield key, found.rule


def read(cls: type[T], node: Any, prefix: str = "", **given: Any) -> tuple[T, list[str]]:
    """`cls` read from the config `node` (a DictConfig or a mapping, found at the key `prefix`, which names its
    values in messages), with every problem of every field at once; `given` fields are set, not read. The instance
    is UNUSABLE when a value has the wrong type (the problems say which)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, Mapping) and not isinstance(node, DictConfig):
        node = OmegaConf.create(dict(node))
    values, found = dict(given), []
    for name, key, item in settings_of(cls, prefix):
        if name in given:
            continue
        raw = _select(node, item.key, key, found)
        if raw is _ABSENT and _has_default(cls, name):
            continue
        if raw is _ABSENT:
            found.append(f"{key} is missing; set it in its YAML file")
        values[name], problems = (UNUSABLE, []) if raw is _ABSENT or raw is UNUSABLE else item.rule.read(key, raw)
        found += problems
    if any(value is UNUSABLE for value in values.values()):
        return UNUSABLE, found
    try:
        return cls(**values), found
    except ValueError:  # a class that checks its own fields refused what is reported above
        if found:
            return UNUSABLE, found
        raise


def field_problems(instance: Any, prefix: str = "") -> list[str]:
    """Every rule `instance` (made in Python, not read from a config) breaks, each named by its full key."""
    return [
        p for name, key, item in settings_of(instance, prefix) for p in item.rule.check(key, getattr(instance, name))
    ]


def _select(node: Any, relative: str, key: str, found: list[str]) -> Any:
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not relative:
        return node
    if not isinstance(node, DictConfig):
        return _ABSENT
    try:
        return OmegaConf.select(node, relative, default=_ABSENT)
    except OmegaConfBaseException as error:  # an interpolation that does not resolve
        found.append(f"{key} cannot be read: {' '.join(str(error).split())}")
        return UNUSABLE


def _has_default(cls: type, name: str) -> bool:
    item = next(f for f in fields(cls) if f.name == name)
    return item.default is not MISSING or item.default_factory is not MISSING


def _joined(prefix: str, key: str) -> str:
    return ".".join(part for part in (prefix, key) if part)
