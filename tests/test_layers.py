"""The package's imports point one way: each package imports only from packages on lower floors (or its own), and
no module imports itself back through others. Every import counts, those inside functions too.

The floors are the architecture of docs/architecture.md, lowest first; a new package takes its floor here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import metareward

PACKAGE = Path(metareward.__file__).parent

FLOORS: tuple[tuple[str, ...], ...] = (
    ("schema", "storage", "compare"),  # rules beside settings fields; records and run files; run tables: leaves
    ("model",),  # loading, adapters and the roles of one model
    ("core", "generation"),  # the paper formulas (pure); generation engines behind one seam
    ("training", "engine"),  # DPO batches and log-probs; the self-judging data engine
    ("sft", "selfinstruct", "evaluation"),  # warm start, prompt growth, evaluations
    ("config", "lightning"),  # the one config layer; the Lightning wiring of the engine
    ("run", "export"),  # entry points: a training run, an export
    ("bench",),  # benchmarks drive whole runs
)
FLOOR = {package: level for level, packages in enumerate(FLOORS) for package in packages}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> Iterator[str]:
    """Every metareward module `path` imports, as a module name (`from metareward.x import y` gives metareward.x.y
    when that is a module, else metareward.x)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("metareward"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("metareward"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                yield candidate if candidate in MODULES else str(node.module)


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
GRAPH = {module: {m for m in imported(path) if m in MODULES and m != module} for module, path in MODULES.items()}


def test_every_package_has_a_floor() -> None:
    packages = {package_of(module) for module in MODULES} - {None}
    assert packages <= set(FLOOR), f"give these packages a floor in FLOORS: {sorted(packages - set(FLOOR))}"


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Imports whose target's package stands on the importer's floor or above (a package's own imports excepted)."""
    return sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if (a := package_of(module)) and (b := package_of(target)) and a != b and FLOOR[b] >= FLOOR[a]
    )


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of two or more modules: each is a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_imports_point_down() -> None:
    assert not upward(GRAPH), "imports that run up or sideways:\n" + "\n".join(upward(GRAPH))


def test_no_module_imports_itself_back() -> None:
    assert not circles(GRAPH), f"modules that import each other in a circle: {circles(GRAPH)}"


def test_the_checks_see_a_circle_and_an_upward_arrow() -> None:
    """The checks can fail: a planted circle and a planted upward import are found, and the graph read from the
    package has its real edges."""
    planted = {
        "metareward.engine.a": {"metareward.engine.b"},
        "metareward.engine.b": {"metareward.engine.c"},
        "metareward.engine.c": {"metareward.engine.a", "metareward.core.d"},
        "metareward.core.d": {"metareward.lightning.e"},
        "metareward.lightning.e": set(),
    }
    assert circles(planted) == [["metareward.engine.a", "metareward.engine.b", "metareward.engine.c"]]
    assert upward(planted) == ["metareward.core.d -> metareward.lightning.e"]
    assert "metareward.generation.policy" in GRAPH["metareward.engine.phases"]


def test_the_core_loads_nothing_of_the_config_system_or_lightning() -> None:
    """core/ is pure: importing every module of it (with the rules its ranges are stated by) loads neither omegaconf
    and Hydra nor Lightning. Checked in a fresh interpreter, where nothing else has imported them."""
    code = (
        "import importlib, pkgutil, sys, metareward.core as core\n"
        "for found in pkgutil.iter_modules(core.__path__): importlib.import_module('metareward.core.' + found.name)\n"
        "print(sorted(m for m in ('omegaconf', 'hydra', 'lightning', 'pytorch_lightning') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
