"""Command-line flags declared on typed records, the way TRL's HfArgumentParser reads its config
dataclasses: a field's metadata holds its flag, `add_arguments` adds one option per such field (in
field order, so `--help` lists them so), and `from_namespace` reads the parsed values back."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Collection, Mapping, TypeVar

R = TypeVar("R")
_FLAG = "flag"


@dataclass(frozen=True)
class Group:
    """An argument group of `--help`."""

    title: str
    description: str | None = None


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]
    """The option strings, e.g. ("-o", "--output"), or the field's name for a positional argument."""
    options: Mapping[str, Any]
    """argparse's other add_argument keywords (help, type, metavar, action, ...). The field's default
    is the flag's unless these give one."""
    group: Group | None = None
    """Where `--help` lists it; None: among the parser's own options."""


def flag(*names: str, group: Group | None = None, **options: Any) -> dict[str, Flag]:
    """Field metadata that makes the field a command-line flag: `field(default=..., metadata=flag(...))`."""
    return {_FLAG: Flag(names, MappingProxyType(options), group)}


def add_arguments(parser: argparse.ArgumentParser, record: type, only: Collection[str] | None = None) -> None:
    """One option for each flag field of `record` (or of those named in `only`)."""
    groups: dict[Group, Any] = {}
    for field in dataclasses.fields(record):
        declared = field.metadata.get(_FLAG)
        if declared is None or (only is not None and field.name not in only):
            continue
        target = parser
        if declared.group is not None:
            if declared.group not in groups:
                groups[declared.group] = parser.add_argument_group(declared.group.title, declared.group.description)
            target = groups[declared.group]
        options = dict(declared.options)
        if "default" not in options and field.default is not dataclasses.MISSING:
            options["default"] = field.default
        positional = not declared.names[0].startswith("-")
        target.add_argument(*declared.names, **options, **({} if positional else {"dest": field.name}))


def from_namespace(record: type[R], args: argparse.Namespace, **others: Any) -> R:
    """`record` from parsed arguments: each flag field from its option (lists, as argparse makes
    them, as tuples), the other fields from `others`."""
    values = {}
    for field in dataclasses.fields(record):
        if _FLAG in field.metadata:
            value = getattr(args, field.name)
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return record(**values, **others)


def flag_names(record: type) -> list[str]:
    """The fields of `record` that are flags, in order."""
    return [field.name for field in dataclasses.fields(record) if _FLAG in field.metadata]
