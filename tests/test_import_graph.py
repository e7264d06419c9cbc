"""The package's import graph: every module imports, no module imports (even lazily, inside a
function or under TYPE_CHECKING) a module that imports it back, and nothing in the package uses the
command line as a library. The subcommands `cli` loads with importlib are edges of the graph too."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import sys
from functools import lru_cache
from pathlib import Path

import pytest

import eval_anything

PACKAGE = "eval_anything"
CLI = "eval_anything.cli"
ENTRY_POINT = "eval_anything.__main__"
"""`python -m eval_anything`: the one module that runs the command line."""


@lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name, with its source file (namespace folders of
    data files, which hold no Python, are left out)."""
    found = {PACKAGE: Path(eval_anything.__file__)}
    for info in pkgutil.walk_packages(eval_anything.__path__, f"{PACKAGE}."):
        spec = importlib.util.find_spec(info.name)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            found[info.name] = Path(spec.origin)
    return found


def imported_by(name: str, source: Path) -> set[str]:
    """The package's modules that `name` imports anywhere in its source."""
    known = modules()
    package = name if source.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    if name == CLI:
        targets.update(importlib.import_module(CLI).COMMAND_MODULES)
    return {t for t in targets if t in known and t != name}


@lru_cache(maxsize=1)
def graph() -> dict[str, frozenset[str]]:
    return {name: frozenset(imported_by(name, source)) for name, source in modules().items()}


def cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """One import circle through each group of modules that import one another (Tarjan's strongly
    connected components, each shown as a path back to its start)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # the package is small: recursion stays shallow
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while (member := stack.pop()) != node:
                group.add(member)
            if group:
                groups.append(group | {node})

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_circle(sorted(group)[0], group, edges) for group in groups]


def _circle(start: str, group: set[str], edges: dict[str, frozenset[str]]) -> list[str]:
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for target in sorted(edges[node] & group):
            if target == start:
                return paths[node] + [start]
            if target not in paths:
                paths[target] = paths[node] + [target]
                frontier.append(target)
    raise AssertionError(f"no circle through {start}")


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_module_imports(name):
    importlib.import_module(name)
    if name == ENTRY_POINT:  # left imported, it would make a later `runpy` of it warn
        sys.modules.pop(name)


def test_the_subcommands_cli_loads_with_importlib_are_modules_of_the_graph():
    from eval_anything.cli import COMMAND_MODULES

    assert set(COMMAND_MODULES) <= graph()[CLI]
    assert all(hasattr(importlib.import_module(m), "add_command") for m in COMMAND_MODULES)


def test_no_module_imports_one_that_imports_it_back():
    found = cycles(graph())
    assert not found, "import circles: " + "; ".join(" -> ".join(circle) for circle in found)


def test_nothing_in_the_package_imports_the_command_line():
    importers = sorted(name for name, targets in graph().items() if CLI in targets and name != ENTRY_POINT)
    assert not importers, f"{CLI} is imported by {', '.join(importers)}: it is the program, not a library"


def test_the_graph_sees_lazy_and_relative_imports(tmp_path):
    module = tmp_path / "example.py"
    module.write_text("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from eval_anything.runner import RunReport\n"
                      "def later():\n    from eval_anything import files\n    import eval_anything.stats\n"
                      "from . import results\n")
    assert imported_by("eval_anything.example", module) == {
        "eval_anything.runner", "eval_anything.files", "eval_anything.stats", "eval_anything.results"}
    edges = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"})}
    assert cycles(edges) == [["a", "b", "c", "a"]]


def private_imports(source: Path) -> list[str]:
    """Names with a leading underscore that `source` imports from another module of the package."""
    found = []
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
            found += [f"{node.module}.{a.name}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_module_imports_another_modules_private_names():
    offenders = {name: private_imports(path) for name, path in modules().items()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_private_import_check_sees_one(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from eval_anything.tasks.task import _hidden, visible\nfrom eval_anything import __version__\n")
    assert private_imports(sample) == ["eval_anything.tasks.task._hidden"]
