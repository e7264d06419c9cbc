"""`eval-anything validate-task PATH|NAME`: load a task without any model and report every problem
at once (schema, scorers, rubrics, template variables, columns, ids, media, answer formats), each
with its file, row or field, and what to do. Exit 0 when clean, 1 otherwise."""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

MAX_PER_KIND = 50
"""Problems of one kind reported in full; the rest are counted."""


@dataclass(frozen=True)
class Problem:
    file: str
    where: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.message}" + (f" -> {self.fix}" if self.fix else "")


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate-task", help="check a task (YAML, data file or name) without any model",
        description="Load a task without any model and report every problem at once, each with its file, "
                    "row or field and what to do. Exit 0 when clean, 1 otherwise.")
    parser.add_argument("task", metavar="PATH|NAME",
                        help="a task YAML, a data file (.jsonl/.csv/.parquet) or a task name")
    parser.add_argument("--include-path", action="append", default=[], type=Path, metavar="DIR",
                        help="also load task YAML files from DIR (repeatable)")
    parser.add_argument("--no-decode", action="store_true", help="check that media files exist but do not decode them")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    problems, checked = validate(args.task, args.include_path, decode=not args.no_decode)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {args.task}", file=sys.stderr)
        return 1
    print(f"{args.task}: ok ({checked})")
    return 0


def validate(target: str, include_path: Iterable[Path] = (), decode: bool = True) -> tuple[list[Problem], str]:
    """Every problem of the task at `target` (a YAML path, a data file or a task name), and a summary."""
    from eval_anything.tasks.inference import infer_config, is_data_file
    from eval_anything.tasks.dataset import DataFileError

    path = Path(target)
    if path.suffix.lower() in (".yaml", ".yml"):
        if not path.is_file():
            return [Problem(target, "file", "does not exist", "give the path of a task YAML")], ""
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            return [Problem(target, "file", f"not valid YAML: {exc}", "fix the YAML syntax")], ""
        return _check(data, path.parent, target, decode)
    if is_data_file(target) and path.is_file():
        try:
            inference = infer_config(path)
        except (ValueError, DataFileError) as exc:
            return [Problem(target, "columns", str(exc), "rename the columns or write a task YAML")], ""
        return _check(inference.data, path.parent, target, decode)
    from eval_anything.tasks import Catalog

    try:
        catalog = Catalog(include_path)
    except ValueError as exc:  # a task that fails to register is reported, never skipped
        return [Problem(target, "catalog", str(exc), "fix that task file, or validate it by path")], ""
    if target not in catalog.tasks:
        return [Problem(target, "name", "no task of that name", "see `eval-anything list`, or give a path")], ""
    task = catalog.tasks[target]
    data = yaml.safe_load(Path(task.source).read_text(encoding="utf-8")) if task.source.endswith((".yaml", ".yml")) \
        else task.config.model_dump(mode="json")
    return _check(data, task.base_dir, task.source, decode)


def _check(data: Any, base_dir: Path, source: str, decode: bool) -> tuple[list[Problem], str]:
    from pydantic import ValidationError

    from eval_anything.tasks.config import TaskConfig

    if not isinstance(data, dict):
        return [Problem(source, "(top level)", f"expected a mapping of fields, got {type(data).__name__}",
                        "see README, 'A task'")], ""
    try:
        config = TaskConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"] if p != "[key]") or "(top level)"
            problems.append(Problem(source, f"field '{where}'", err["msg"], _field_fix(err)))
        # scorers can still be checked on their own when only other fields are wrong
        problems += _scorer_problems(data.get("scorers"), base_dir, source)
        return problems, ""
    problems = _scorer_problems([s.model_dump() for s in config.scorers], base_dir, source)
    problems += _template_problems(config, source)
    rows, row_problems = _row_problems(config, base_dir, source, decode)
    problems += row_problems
    return problems, f"{rows} rows, scorers {', '.join(s.name for s in config.scorers)}"


def _field_fix(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return "remove it or check its spelling (README, 'A task', lists every field)"
    if err["type"] == "missing":
        return "add this field"
    return "fix its value"


def _scorer_problems(scorers: Any, base_dir: Path, source: str) -> list[Problem]:
    from eval_anything.scorers import build_scorer

    problems = []
    for index, spec in enumerate(scorers if isinstance(scorers, list) else []):
        spec = {"name": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or "name" not in spec:
            continue
        args = spec.get("args") or {}
        template = args.get("template") if isinstance(args, dict) else None
        try:
            scorer = build_scorer(spec["name"], args)
            scorer.bind_task(base_dir)
        except (KeyError, ValueError, FileNotFoundError, TypeError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            what = "rubric" if template is not None and spec["name"].startswith("judge") else "scorer"
            problems.append(Problem(source, f"field 'scorers.{index}' ({spec['name']})", str(message),
                                    f"use a known {what} name (see README, 'Judges' and 'A scorer')"))
    return problems


def _template_problems(config: Any, source: str) -> list[Problem]:
    import jinja2

    from eval_anything.tasks.task import PROMPT_TEMPLATES

    problems = []
    for field_name in ("prompt", "system"):
        text = getattr(config, field_name)
        if text is None:
            continue
        try:
            parsed = PROMPT_TEMPLATES.parse(text)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(Problem(source, f"field '{field_name}'", f"template syntax error on line {exc.lineno}: "
                                    f"{exc.message}", "fix the Jinja2 template"))
    return problems


def _undeclared(text: str | None) -> set[str]:
    from jinja2 import meta

    from eval_anything.tasks.task import PROMPT_TEMPLATES

    if text is None:
        return set()
    try:
        return set(meta.find_undeclared_variables(PROMPT_TEMPLATES.parse(text)))
    except Exception:
        return set()


def _row_problems(config: Any, base_dir: Path, source: str, decode: bool) -> tuple[int, list[Problem]]:
    from eval_anything.datamodel import Modality
    from eval_anything.tasks.config import MEDIA
    from eval_anything.tasks.dataset import DataFileError, iter_rows
    from eval_anything.tasks.task import MEDIA_SUFFIXES, as_list, letter_to_choice

    data_path = (base_dir / config.dataset.path).resolve()
    data_file = str(data_path)
    problems: list[Problem] = []
    kinds: Counter[str] = Counter()

    def report(kind: str, problem: Problem) -> None:
        kinds[kind] += 1
        if kinds[kind] <= MAX_PER_KIND:
            problems.append(problem)

    provided = {"choices", "letters", "sample_id"}
    variables = _undeclared(config.prompt) | _undeclared(config.system)
    scorer_names = {s.name for s in config.scorers}
    seen: dict[str, int] = {}
    missing_vars: dict[str, list[int]] = {}
    columns_seen: set[str] = set()
    rows = 0
    try:
        for index, row in enumerate(iter_rows(data_path)):
            if config.dataset.limit and index >= config.dataset.limit:
                break
            rows += 1
            where = f"row {index + 1}"
            columns_seen.update(row)
            for var in sorted(variables - provided - set(row)):
                missing_vars.setdefault(var, []).append(index + 1)
            sample_id = str(row.get(config.id_field, index))
            if sample_id in seen:
                report("dup", Problem(data_file, f"{where}, field '{config.id_field}'",
                                      f"duplicate id {sample_id!r} (first at row {seen[sample_id] + 1})",
                                      "give every item a unique id"))
            else:
                seen[sample_id] = index
            for part in config.input:
                ((kind, column),) = part.items()
                if column not in row:
                    report(f"col:{column}", Problem(data_file, f"{where}, field '{column}'",
                                                    f"missing column (task input {kind})",
                                                    "add the column or fix the task's input"))
                    continue
                if kind == Modality.TEXT.value:
                    continue
                problem = _media_problem(row[column], kind, data_path, MEDIA, MEDIA_SUFFIXES, decode)
                if problem:
                    report("media", Problem(data_file, f"{where}, field '{column}'", *problem))
            # target and choices may be absent on a row (judged items, optional objective answers);
            # the scorers that need them are checked below
            choices = [str(c) for c in as_list(row.get(config.choices))] if config.choices else []
            targets = [str(t) for t in as_list(row.get(config.target))] if config.target else []
            for problem in _answer_problems(scorer_names, choices, targets, config.choices, letter_to_choice):
                report("answer", Problem(data_file, f"{where}, field '{config.target}'", *problem))
    except DataFileError as exc:
        problems.append(Problem(data_file, "file", str(exc), "fix the data file"))
    except (OSError, ValueError) as exc:
        problems.append(Problem(data_file, "file", f"cannot be read: {exc}", "fix the data file"))
    for var, at in missing_vars.items():
        shown = ", ".join(map(str, at[:10])) + (", ..." if len(at) > 10 else "")
        problems.insert(0, Problem(source, "field 'prompt'", f"template variable {var!r} is provided by no column "
                                   f"({data_file} rows {shown}: {len(at)} of {rows})",
                                   "add the column to the data or fix the variable's name"))
    if rows == 0 and not problems:
        problems.append(Problem(data_file, "file", "has no rows", "add items"))
    for kind, count in kinds.items():
        if count > MAX_PER_KIND:
            problems.append(Problem(source, kind, f"... and {count - MAX_PER_KIND} more problems of this kind"))
    return rows, problems


def _media_problem(value: Any, kind: str, data_path: Path, media: str, suffixes: dict,
                   decode: bool) -> tuple[str, str] | None:
    from eval_anything.datamodel import Modality

    text = str(value)
    if "://" in text:
        return (f"holds a URL ({text}); URLs are not fetched (runs are offline)",
                "download the file next to the data and give its relative path")
    path = Path(text)
    path = path if path.is_absolute() else data_path.parent / path
    if not path.is_file():
        return f"media file {text} not found (looked for {path})", "put the file there or fix the path"
    if kind == media:
        found = [m for m, ends in suffixes.items() if path.suffix.lower() in ends]
        if not found:
            return (f"cannot tell the modality of {path.name} from its extension",
                    f"use one of {', '.join(e for ends in suffixes.values() for e in ends)}")
        modality = found[0]
    else:
        modality = Modality(kind)
    if decode:
        error = decode_error(path, modality)
        if error:
            return f"{modality.value} file {text} cannot be decoded: {error}", "replace the file with a valid one"
    return None


def decode_error(path: Path, modality: Any) -> str | None:
    """Why the media file cannot be decoded, or None when it can."""
    try:
        if modality.value == "image":
            from PIL import Image

            with Image.open(path) as image:
                image.load()
        elif modality.value == "audio":
            import soundfile

            soundfile.info(str(path))
        elif modality.value == "video":
            import av

            with av.open(str(path)) as container:
                next(container.decode(video=0))
    except StopIteration:
        return "no video frames"
    except Exception as exc:  # every decoder has its own errors
        return f"{type(exc).__name__}: {exc}"
    return None


def _answer_problems(scorers: set[str], choices: list[str], targets: list[str], choice_column: str | None,
                     to_choice: Any) -> list[tuple[str, str]]:
    from eval_anything.scorers.text import parse_number

    problems = []
    rule_scorers = scorers & {"exact_match", "numeric", "multiple_choice", "regex", "token_f1"}
    if rule_scorers and not targets:
        problems.append(("no answer, and the scorers " + ", ".join(sorted(rule_scorers)) + " need one",
                         "fill in the answer"))
        return problems
    if "numeric" in scorers:
        for t in targets:
            if parse_number(t) is None:
                problems.append((f"answer {t!r} is not a number, which the numeric scorer needs",
                                 "write the answer as a number or use exact_match"))
    if "multiple_choice" in scorers:
        if not choice_column:
            problems.append(("multiple_choice needs choices", "name the choices column in the task (choices: COLUMN)"))
        elif len(choices) < 2:
            problems.append((f"{len(choices)} choice(s); multiple choice needs at least 2", "list the options"))
        else:
            for t in targets:
                if to_choice(t, tuple(choices)) not in choices:
                    problems.append((f"answer {t!r} is neither one of the choices {choices} nor their letter",
                                     "make the answer one of the choices (or its letter)"))
    return problems
