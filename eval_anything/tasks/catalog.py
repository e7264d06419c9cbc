"""Finding tasks by name or group: built-in YAML files, extra folders, Python definitions."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable, Iterable

from eval_anything.errors import UsageError
from eval_anything.registry import UnknownNameError
from eval_anything.tasks.config import TaskConfig, TaskFileError, load_task_file, parse_task_config
from eval_anything.tasks.task import Task

BUILTIN_DIR = Path(__file__).parent / "builtin"
ALL = "all"

_python_tasks: dict[str, Callable[[], Task]] = {}


def task(func: Callable[[], Task]) -> Callable[[], Task]:
    """Register a Python-defined task: a function returning a Task (see `task_from_dict`)."""
    name = func.__name__
    if name in _python_tasks:
        raise UsageError(f"task {name!r} is already registered")
    _python_tasks[name] = func
    return func


def task_from_dict(data: dict, base_dir: Path | str, source: str = "python") -> Task:
    """Build a Task from a mapping with the same fields as a task file."""
    return Task(parse_task_config(data, source), Path(base_dir), source)


class Catalog:
    """All known tasks, loaded from their files; every bad file is an error, never skipped."""

    def __init__(self, extra_dirs: Iterable[Path] = ()) -> None:
        self.tasks: dict[str, Task] = {}
        for directory in (BUILTIN_DIR, *extra_dirs):
            for path in sorted(Path(directory).rglob("*.yaml")):
                self.add(self._load(path))
        for factory in _python_tasks.values():
            self.add(factory())

    @staticmethod
    def _load(path: Path) -> Task:
        return Task(load_task_file(path), path.parent, str(path))

    def add(self, item: Task) -> None:
        if item.name in self.tasks:
            raise TaskFileError(
                f"task {item.name!r} is defined twice: {self.tasks[item.name].source} and {item.source}"
            )
        member_of_own_group = item.name in item.config.tags  # e.g. the task `amg` in the group `amg`
        if item.name == ALL or (item.name in self.groups() and not member_of_own_group):
            raise TaskFileError(f"task name {item.name!r} ({item.source}) clashes with a group name")
        self.tasks[item.name] = item

    def groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for item in self.tasks.values():
            for tag in item.config.tags:
                groups.setdefault(tag, []).append(item.name)
        return groups

    def resolve(self, selection: str | Iterable[str]) -> list[Task]:
        """Tasks for a comma-separated list of task names, group names, 'all' or task file paths."""
        names = selection.split(",") if isinstance(selection, str) else list(selection)
        chosen: dict[str, Task] = {}
        groups = self.groups()
        for raw in (n.strip() for n in names):
            if not raw:
                continue
            for item in self._expand(raw, groups):
                chosen.setdefault(item.name, item)
        if not chosen:
            raise UnknownNameError("no tasks selected")
        return list(chosen.values())

    def _expand(self, name: str, groups: dict[str, list[str]]) -> list[Task]:
        if name == ALL:
            return list(self.tasks.values())
        if name in groups:  # a group wins over its namesake task, which it contains
            return [self.tasks[n] for n in groups[name]]
        if name in self.tasks:
            return [self.tasks[name]]
        if name.endswith((".yaml", ".yml")) and Path(name).exists():
            return [self._load(Path(name))]
        from eval_anything.tasks.inference import is_data_file, load_data_task  # a zero-code task: a data file

        if is_data_file(name) and Path(name).is_file():
            return [load_data_task(Path(name))]
        known = [ALL, *self.tasks, *groups]
        near = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
        raise UnknownNameError(f"unknown task or group {name!r}{hint} (see `eval-anything list`)")


__all__ = ["ALL", "Catalog", "TaskConfig", "task", "task_from_dict"]
