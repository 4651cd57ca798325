"""Parts of a run named by `_target_` in the config: a node `{_target_: package.module.Class, <keyword parameters>}`,
with `_partial_: true` when the caller supplies the leading arguments later (an optimizer gets the adapter
parameters). Adding one is a class plus a YAML file in its config group; nothing here names the classes.

A node is checked in two steps, so that one mistake is reported once: its shape (a `_target_` that imports,
parameters its signature takes), then what its constructor refuses and whether it is the kind of part asked for.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from metareward.schema.rules import Rule

TARGET, PARTIAL = "_target_", "_partial_"


def one_line(error: BaseException) -> str:
    """An exception's message on one line, as every config problem is."""
    return " ".join(str(error).split()) or type(error).__name__


@dataclass(frozen=True)
class Component:
    """The class at `target` and the keyword parameters the config gives it; `key` is where the node sits
    (`dpo.loss`), so that messages name it. An empty target stands for a node that could not be read."""

    key: str
    target: str
    params: dict[str, Any]
    partial: bool = False

    def build(self, *args: Any) -> Any:
        """An instance, or with `_partial_` a callable that takes the remaining leading arguments."""
        factory = locate(self.target)
        if self.partial:
            return functools.partial(factory, *args, **self.params)
        return factory(*args, **self.params)

    def shape_problems(self, supplied_later: int = 0) -> list[str]:
        """Does the target import, and does its signature take these parameters (after `supplied_later` leading
        arguments given at build time)? An unreadable node (empty target) was reported already."""
        if not self.target:
            return []
        try:
            factory = locate(self.target)
        except (ImportError, AttributeError, TypeError, ValueError) as error:
            reason = one_line(error)
            return [f"{self.key}._target_={self.target!r} does not import ({reason}); name it as package.module.Class"]
        try:
            signature = inspect.signature(factory)
        except (TypeError, ValueError):  # a builtin without a signature: its constructor will say
            return []
        try:
            signature.bind(*([None] * supplied_later), **self.params)
        except TypeError as error:
            names = [name for name in signature.parameters if name not in ("self", "params")]
            group = self.key.replace(".", "/")
            fix = f"fix the YAML file in conf/{group}/ or the {self.key}.<name> override"
            return [
                f"{self.key}: {self.target} does not accept these parameters ({one_line(error)}); it takes {names}; {fix}"
            ]
        return []


def locate(target: str) -> Callable[..., Any]:
    """The object at the dotted path `target` (`torch.optim.AdamW`): the longest importable module, then
    attributes, as Hydra resolves `_target_`. Raises ImportError or AttributeError with a one-line reason."""
    parts = target.split(".")
    if len(parts) < 2 or not all(parts):
        raise ValueError("not a dotted path")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError as error:
            if split == 1:
                raise ImportError(str(error)) from None
            continue
        for name in parts[split:]:
            found = getattr(found, name)
        if not callable(found):
            raise TypeError(f"{target} is not callable")
        return found
    raise ImportError(f"no module in {target!r}")


def node_component(node: Any, key: str) -> tuple[Component, list[str]]:
    """`node`, the config node at `key`, as a component, and what makes it unreadable (then its target is empty)."""
    group, empty = key.replace(".", "/"), Component(key, "", {})
    if isinstance(node, Mapping) and not isinstance(node, DictConfig):
        node = OmegaConf.create(dict(node))
    if not isinstance(node, DictConfig):
        what = " is missing" if node is None else f"={node!r} names no class"
        return empty, [f"{key}{what}; select one with {group}=<name> (a YAML file in conf/{group}/)"]
    try:
        params = OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException as error:
        return empty, [f"{key} cannot be read: {one_line(error)}"]
    target = params.pop(TARGET, None)  # type: ignore[union-attr]
    partial = params.pop(PARTIAL, False)  # type: ignore[union-attr]
    reserved = sorted(name for name in params if str(name).startswith("_"))  # type: ignore[union-attr]
    if not isinstance(target, str):
        return empty, [f"{key}._target_={target!r} is not a class path; name one as package.module.Class"]
    if reserved or not isinstance(partial, bool):
        return empty, [f"{key}: only _target_ and _partial_ (true or false) are understood here, not {reserved}"]
    return Component(key, target, params, partial), []  # type: ignore[arg-type]


def checked_build(
    node: Component, kind: type, settings_error: type[Exception] | None = None, supplied_later: int = 0
) -> tuple[Any, list[str]]:
    """`node` built (None when it cannot be) and its problems, one sentence each: its shape, what its constructor
    refuses (each problem of a `settings_error`, which carries `.problems`, named by its key), a result that is no
    `kind`. A partial node is built as the callable that takes the `supplied_later` leading arguments."""
    found = node.shape_problems(supplied_later)
    if not node.target or found:
        return None, found
    caught = (settings_error,) if settings_error else ()  # () catches nothing: a class without a settings error
    try:
        built = node.build()
    except caught as error:
        return None, [f"{node.key}.{problem}" for problem in error.problems]  # type: ignore[attr-defined]
    except Exception as error:  # noqa: BLE001 - the class may be the user's: whatever it raises is a problem
        return None, [f"{node.key}: {node.target} refused its parameters: {one_line(error)}"]
    if not isinstance(built, kind):
        return None, [f"{node.key}: {node.target} is not a {kind.__module__}.{kind.__qualname__}"]
    return built, []


def built_component(
    node: Any, key: str, kind: type, settings_error: type[Exception] | None = None
) -> tuple[Any, list[str]]:
    """The part the config node at `key` names, built and checked (None with its problems when it cannot be)."""
    component, found = node_component(node, key)
    return (None, found) if found else checked_build(component, kind, settings_error)


@dataclass(frozen=True)
class Node(Rule):
    """A component node, read and its shape checked; built later by its group, once the values it reads are sound."""

    supplied_later: int = 0

    def read(self, key: str, raw: Any) -> tuple[Any, list[str]]:
        component, found = node_component(raw, key)
        return component, found or component.shape_problems(self.supplied_later)

    def check(self, key: str, value: Any) -> list[str]:
        return []


@dataclass(frozen=True)
class Built(Rule):
    """A component node built into a `kind`; when it cannot be, `stand_in` takes its place (so that the other
    settings are still checked) and its problems are reported."""

    kind: type
    stand_in: Any
    settings_error: type[Exception] | None = None

    def read(self, key: str, raw: Any) -> tuple[Any, list[str]]:
        built, found = built_component(raw, key, self.kind, self.settings_error)
        return (self.stand_in if built is None else built), found

    def check(self, key: str, value: Any) -> list[str]:
        return []
