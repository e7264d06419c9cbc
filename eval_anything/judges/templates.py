"""Rubric templates: Jinja2 files shipped here or beside a task, identified by their content hash."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from eval_anything.errors import UsageError

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
_ENVIRONMENT = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class Rubric:
    """One judge prompt template."""

    name: str
    path: Path

    @classmethod
    def find(cls, name: str, task_dir: Path | None = None) -> "Rubric":
        """A built-in rubric by name (e.g. `rating_1_10`), or a .jinja file relative to the task."""
        candidates = []
        if name.endswith((".jinja", ".j2")):
            candidates.append(Path(name) if Path(name).is_absolute() else (task_dir or Path.cwd()) / name)
        candidates.append(BUILTIN_TEMPLATES / f"{name}.jinja")
        for path in candidates:
            if path.is_file():
                return cls(name, path)
        known = ", ".join(sorted(p.stem for p in BUILTIN_TEMPLATES.glob("*.jinja")))
        raise UsageError(f"no rubric template {name!r} (built-in: {known}; or a .jinja path relative to the task)")

    @cached_property
    def source(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @cached_property
    def hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    @cached_property
    def _template(self) -> jinja2.Template:
        try:
            return _ENVIRONMENT.from_string(self.source)
        except jinja2.TemplateSyntaxError as exc:
            raise UsageError(f"rubric {self.path}: syntax error on line {exc.lineno}: {exc.message}") from None

    def render(self, **variables: Any) -> str:
        try:
            return self._template.render(**variables).strip()
        except jinja2.UndefinedError as exc:
            raise UsageError(f"rubric {self.path}: {exc.message}") from None

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "sha256": self.hash}
