"""`eval-anything verify`: compare a run's scores with reference scores (task x model x metric, each
with a tolerance) kept in a small versioned YAML file. The package ships references for the
embedded default model (eval_anything/references/embedded.yaml); users add their own files.

Exit 0: every compared score within tolerance; 1: at least one outside; 2: not comparable (no
reference applies, or the run's scoring protocol, task version, task hash or settings differ from
the reference's, or the task did not complete). A reference or run without a protocol (older ones,
or tasks with one way of scoring only) is compared as before."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from eval_anything.datamodel import Status
from eval_anything.leaderboard.runs import task_protocol

REFERENCES_DIR = Path(__file__).parent / "references"
SHIPPED = REFERENCES_DIR / "embedded.yaml"
REFERENCE_FORMAT = 1
SETTING_KEYS = ("limit", "seed", "max_new_tokens")
ANY_MODEL = "*"
"""A reference for any model: those taken from another run (--reference-run), where the model may sit
at another path (a replay file unpacked from a bundle); the task hashes still have to agree."""
PASS, FAIL, NOT_COMPARABLE = "within tolerance", "OUTSIDE tolerance", "not comparable"


class ReferenceFileError(ValueError):
    """A reference file is malformed; the message names the file and entry."""


@dataclass(frozen=True)
class Reference:
    task: str
    model: str
    metric: str
    value: float
    tolerance: float
    task_version: Any = None
    task_hash: str | None = None
    settings: dict[str, Any] | None = None
    source: str = ""
    protocol: str | None = None
    """The scoring protocol the reference value was measured under (e.g. paper); None: not recorded."""


def load_references(path: Path) -> list[Reference]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ReferenceFileError(f"reference file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("references"), list):
        raise ReferenceFileError(f"reference file {path}: expected `format`, `version` and a `references` list")
    if data.get("format", REFERENCE_FORMAT) != REFERENCE_FORMAT:
        raise ReferenceFileError(f"reference file {path}: format {data.get('format')!r}; this version reads "
                                 f"format {REFERENCE_FORMAT}")
    out = []
    for index, entry in enumerate(data["references"]):
        where = f"reference file {path}: references[{index}]"
        if not isinstance(entry, dict):
            raise ReferenceFileError(f"{where}: expected a mapping")
        missing = [k for k in ("task", "model", "metric", "value", "tolerance") if k not in entry]
        if missing:
            raise ReferenceFileError(f"{where}: missing {', '.join(missing)}")
        unknown = set(entry) - {"task", "model", "metric", "value", "tolerance", "task_version", "task_hash",
                                "settings", "protocol", "note"}
        if unknown:
            raise ReferenceFileError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        try:
            value, tolerance = float(entry["value"]), float(entry["tolerance"])
        except (TypeError, ValueError):
            raise ReferenceFileError(f"{where}: value and tolerance must be numbers") from None
        if tolerance < 0:
            raise ReferenceFileError(f"{where}: tolerance must not be negative")
        out.append(Reference(str(entry["task"]), str(entry["model"]), str(entry["metric"]), value, tolerance,
                             entry.get("task_version"), entry.get("task_hash"), entry.get("settings"),
                             f"{path} [{index}]", None if entry.get("protocol") is None else str(entry["protocol"])))
    return out


def model_label(results: dict[str, Any]) -> str:
    model = results.get("model") or {}
    return f"{model.get('backend')}:{model.get('reference')}"


def model_commit(results: dict[str, Any]) -> str | None:
    """The commit a run's Hub model resolved to; None for a local folder (or a run that did not record it)."""
    return (results.get("model") or {}).get("commit")


def names_run_model(reference_model: str, label: str) -> bool:
    """Whether a reference's `model` names the run's model: the same label, or the label with a revision
    (`hf:ORG/NAME@SHA`), whose commit `revision_differs` then checks."""
    return reference_model in (label, ANY_MODEL) or reference_model.rpartition("@")[0] == label.partition("@")[0]


def revision_differs(reference_model: str, label: str, commit: str | None) -> str:
    """Why a reference pinned to a revision does not apply to a run of another commit; "" when it applies."""
    if reference_model in (label, ANY_MODEL) or "@" not in reference_model:
        return ""
    pinned = reference_model.rpartition("@")[2]
    if commit is not None and commit.startswith(pinned.lower()) and len(pinned) >= 7:
        return ""
    return (f"the reference is for {reference_model}, the run used commit {commit or 'not recorded'}: another "
            f"revision is another model; rerun with --model {reference_model}")


def references_from_run(run_dir: Path, tolerance: float) -> list[Reference]:
    """Every complete metric of another run (a folder or an exported .tar.gz) as references."""
    run_dir = _run_folder(run_dir)
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    out = []
    for name, task in results.get("tasks", {}).items():
        if task.get("status") != Status.COMPLETE:
            continue
        for metric, figures in (task.get("metrics") or {}).items():
            if isinstance(figures, dict) and isinstance(figures.get("value"), (int, float)):
                out.append(Reference(name, ANY_MODEL, metric, float(figures["value"]), tolerance,
                                     task.get("version"), task.get("hash"), manifest.get("settings"), str(run_dir),
                                     task_protocol(task, manifest, name)))
    return out


def _run_folder(path: Path) -> Path:
    path = Path(path)
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        from eval_anything.export import unpack

        return unpack(path) / "run"
    return path


@dataclass
class Comparison:
    task: str
    metric: str
    reference: Reference | None
    measured: float | None
    verdict: str
    reason: str = ""

    def line(self) -> str:
        ref = self.reference
        if ref is None or self.measured is None:
            return f"  {self.task}/{self.metric}: {self.verdict}: {self.reason}"
        diff = self.measured - ref.value
        return (f"  {self.task}/{self.metric}: reference {ref.value:.4f}, measured {self.measured:.4f}, "
                f"difference {diff:+.4f}, tolerance {ref.tolerance:.4f}: {self.verdict}"
                + (f" ({self.reason})" if self.reason else ""))


def compare(run_dir: Path, references: Iterable[Reference]) -> tuple[list[Comparison], list[str]]:
    """Comparisons for every reference that names this run's model and one of its tasks; and the
    run's tasks that no reference covers."""
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    label, commit = model_label(results), model_commit(results)
    settings = manifest.get("settings") or {}
    tasks = results.get("tasks") or {}
    comparisons = []
    covered = set()
    for ref in references:
        if not names_run_model(ref.model, label) or ref.task not in tasks:
            continue
        covered.add(ref.task)
        task = tasks[ref.task]
        figures = (task.get("metrics") or {}).get(ref.metric)
        protocol = task_protocol(task, manifest, ref.task)
        reason = ""
        pinned = revision_differs(ref.model, label, commit)
        if pinned:
            reason = pinned
        elif ref.protocol is not None and protocol is not None and ref.protocol != protocol:
            reason = (f"the reference was scored under protocol {ref.protocol!r}, the run under {protocol!r}; "
                      f"rerun with --protocol {ref.protocol}")
        elif task.get("status") != Status.COMPLETE:
            reason = f"the task is {task.get('status')}" + (f": {task['reason']}" if task.get("reason") else "")
        elif ref.task_version is not None and str(ref.task_version) != str(task.get("version")):
            reason = f"task version {task.get('version')} in the run, {ref.task_version} in the reference"
        elif ref.task_hash and ref.task_hash != task.get("hash"):
            reason = "the task's definition or data differ from the reference's (task hash)"
        elif ref.settings is not None and any(ref.settings.get(k) != settings.get(k) for k in SETTING_KEYS
                                              if k in ref.settings):
            differ = [f"{k} {settings.get(k)!r} (reference {ref.settings.get(k)!r})" for k in SETTING_KEYS
                      if k in ref.settings and ref.settings.get(k) != settings.get(k)]
            reason = "run settings differ: " + ", ".join(differ)
        elif not isinstance(figures, dict) or not isinstance(figures.get("value"), (int, float)):
            reason = f"the run has no value for metric {ref.metric!r}"
        if reason:
            comparisons.append(Comparison(ref.task, ref.metric, ref, None, NOT_COMPARABLE, reason))
            continue
        measured = float(figures["value"])
        within = abs(measured - ref.value) <= ref.tolerance + 1e-12
        comparisons.append(Comparison(ref.task, ref.metric, ref, measured, PASS if within else FAIL))
    uncovered = [name for name in tasks if name not in covered]
    return comparisons, uncovered


def exit_code(comparisons: list[Comparison]) -> int:
    if any(c.verdict == FAIL for c in comparisons):
        return 1
    if not comparisons or any(c.verdict == NOT_COMPARABLE for c in comparisons):
        return 2
    return 0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify", help="compare a run's scores with reference scores and tolerances",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compare a finished run (or run first, with --model/--tasks) against reference scores.\n"
                    "exit 0: all within tolerance; 1: at least one outside; 2: not comparable",
        epilog="examples:\n  eval-anything verify runs/embedded-smollm2-135m-instruct-ba3cf27ad1\n"
               "  eval-anything verify --tasks arith_mini                 # runs the embedded default first\n"
               "  eval-anything verify RUN --references my_refs.yaml\n"
               "  eval-anything verify RUN --reference-run run.tar.gz --tolerance 0   # a reproduction")
    parser.add_argument("run", nargs="?", type=Path, metavar="RUN",
                        help="a finished run directory (or an exported run .tar.gz); omit to run first")
    parser.add_argument("--references", action="append", type=Path, default=None, metavar="FILE",
                        help=f"reference YAML (repeatable; default: the shipped {SHIPPED.name})")
    parser.add_argument("--reference-run", type=Path, metavar="RUN",
                        help="use another run's scores (a folder or an exported .tar.gz) as the references")
    parser.add_argument("--tolerance", type=float, default=0.0,
                        help="tolerance for --reference-run (default 0: identical scores)")
    parser.add_argument("--model", help="run this model first (as `run --model`)")
    parser.add_argument("--tasks", help="run these tasks first (as `run --tasks`)")
    parser.add_argument("--output-dir", type=Path, default=Path("runs"), help="where a run made here goes")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    run_dir = args.run
    if run_dir is None:
        if not args.tasks:
            print("eval-anything verify: give a RUN directory, or --tasks (and --model) to run first", file=sys.stderr)
            return 2
        run_dir = _run_first(args.tasks, args.model, args.output_dir)
        if run_dir is None:
            return 2
    run_dir = _run_folder(run_dir)
    if not (run_dir / "results.json").is_file():
        print(f"eval-anything verify: {run_dir} is not a finished run (no results.json)", file=sys.stderr)
        return 2
    if args.reference_run is not None:
        references = references_from_run(args.reference_run, args.tolerance)
        origin = str(args.reference_run)
    else:
        files = args.references or [SHIPPED]
        references = [r for f in files for r in load_references(f)]
        origin = ", ".join(str(f) for f in files)
    comparisons, uncovered = compare(run_dir, references)
    print(f"verify: run {run_dir}\n        references {origin}")
    for comparison in comparisons:
        print(comparison.line())
    if uncovered:
        print(f"  no reference for: {', '.join(uncovered)} (not compared)")
    code = exit_code(comparisons)
    if not comparisons:
        print("  no reference names this run's model and tasks")
    print(f"result: {['PASS', 'OUTSIDE TOLERANCE', 'NOT COMPARABLE'][code]} (exit {code})")
    return code


def _run_first(tasks: str, model: str | None, output_dir: Path) -> Path | None:
    """The run directory of `eval-anything run --tasks TASKS [--model MODEL]`, run here; None when
    that command could not run (the error said on stderr)."""
    from eval_anything.console import RichProgress, exit_code_of, report_run
    from eval_anything.runner import evaluate
    from eval_anything.settings import parse_run_command, resolve_evaluation

    argv = ["run", "--tasks", tasks, "--output-dir", str(output_dir)] + (["--model", model] if model else [])

    def run() -> int:
        arguments = parse_run_command(argv)
        spec, resolved, settings = resolve_evaluation(arguments, repeats=arguments.repeats)
        return report_run(evaluate(spec, resolved, settings, RichProgress()))

    if exit_code_of(run) not in (0, 1):
        return None
    manifests = sorted(Path(output_dir).glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    return manifests[-1].parent if manifests else None
