"""Import hygiene: no cycles among the package's modules, no public name that hides a module, and
a light ``import wmprobe`` and ``wmprobe --help`` (no torch, torchvision or matplotlib)."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SRC = REPO / "src"
PACKAGE = SRC / "wmprobe"
HEAVY = ("torch", "torchvision", "matplotlib")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_at_import_time(module: str) -> list[str]:
    """Modules that ``module`` imports while it is being imported: module-level statements,
    including those inside module-level if/try blocks, but not under ``if TYPE_CHECKING``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, *(h.body for h in node.handlers), node.orelse):
                    visit(block)
                visit(node.finalbody)
            elif isinstance(node, ast.Import):
                found.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                submodules = [f"{source}.{a.name}" for a in node.names]
                submodules = [m for m in submodules if m in MODULES]
                if len(submodules) < len(node.names):  # some names are attributes of `source`
                    found.append(source)
                found.extend(submodules)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it needs initialised first.

    An import of ``a.b.c`` needs ``a.b.c`` and, implicitly, the packages ``a`` and ``a.b`` -- except
    the module's own packages (itself too, for a package), which are already being initialised.
    """
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        parts = module.split(".")
        own_packages = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        edges: set[str] = set()
        for target in _imported_at_import_time(module):
            if target.split(".")[0] != "wmprobe":
                continue
            if target in MODULES and target != module:
                edges.add(target)
            pieces = target.split(".")
            for i in range(1, len(pieces)):
                parent = ".".join(pieces[:i])
                if parent in MODULES and parent not in own_packages:
                    edges.add(parent)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that returns to its start, or None when it is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [])):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_the_imports():
    graph = import_graph()
    assert len(graph) > 50
    assert "wmprobe.stats.core" in graph["wmprobe.auditing.tables"] | graph["wmprobe.stats"]
    assert "wmprobe.errors" in graph["wmprobe.models.registry"]
    assert "wmprobe.extraction" not in graph["wmprobe.extraction.cache"]  # its own package


def test_no_import_cycles_among_the_packages_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _packages() -> list[str]:
    return [m for m, p in MODULES.items() if p.name == "__init__.py"]


@pytest.mark.parametrize("package", _packages())
def test_every_package_has_a_docstring_and_all_and_no_name_hides_a_module(package):
    mod = importlib.import_module(package)
    assert mod.__doc__ and mod.__doc__.strip(), f"{package} has no docstring"
    names = list(getattr(mod, "__all__", []))
    assert names, f"{package} has no __all__"
    assert len(names) == len(set(names)), f"{package}.__all__ repeats a name"
    for name in names:
        assert hasattr(mod, name), f"{package}.__all__ names {name!r}, which it does not have"
        assert f"{package}.{name}" not in MODULES, f"{package}.{name} hides the module"


def _imported(argv: list[str]) -> set[str]:
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    run = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    lines = [line for line in run.stderr.splitlines() if line.startswith("import time:")]
    assert lines, run.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip() for line in lines}


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [["-c", "import wmprobe"], ["-m", "wmprobe", "--help"], ["-m", "wmprobe", "audit", "--help"]],
    ids=["import", "help", "audit-help"],
)
def test_light_import_and_help_load_no_torch(argv):
    modules = _imported(argv)
    assert "wmprobe" in modules
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not heavy, f"{' '.join(argv)} imported {heavy[:5]}"


@pytest.mark.slow
def test_the_importtime_check_sees_torch_when_it_is_loaded():
    assert "torch" in _imported(["-c", "import wmprobe; wmprobe.audit"])
