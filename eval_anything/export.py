"""Reproduction bundles: `eval-anything export RUN -o run.tar.gz` packs a run directory with the
files of every task it ran (task YAML, data, the media the evaluated rows use, rubric templates and
other files the scorers name), a replay model's predictions, and `bundle.json` (the original command,
settings and sha256 of every file). `eval-anything run --from run.tar.gz` reruns exactly that
evaluation, and `eval-anything verify NEW_RUN --reference-run run.tar.gz` compares the two.

Layout inside the archive:
    bundle.json
    run/                 the run directory as it was (manifest.json, results.json, samples/, media/)
    tasks/<name>/...     each task's files, in their original layout relative to one another
    model/<file>         the predictions of a replay model"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval_anything.files import file_sha256
from eval_anything.locking import is_lock_file
from eval_anything.redaction import was_redacted

if TYPE_CHECKING:
    from eval_anything.settings import RunArguments

BUNDLE_FORMAT = 1
BUNDLE_FILE = "bundle.json"


class BundleError(ValueError):
    """A run cannot be exported, or an archive is not a usable reproduction bundle."""


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="pack a run with its task files into a reproduction bundle (.tar.gz)",
        description="Pack a run directory with the task files, templates and manifest, so that "
                    "`eval-anything run --from BUNDLE` reruns exactly that evaluation elsewhere.")
    parser.add_argument("run", type=Path, metavar="RUN", help="a run directory")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.tar.gz")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    info = export_run(args.run, args.output)
    print(f"wrote {args.output}: run {info['run_id']}, {len(info['tasks'])} task(s), {len(info['files'])} files")
    for note in info.get("notes", []):
        print(f"  note: {note}")
    return 0



def _task_files(task: Any, limit: int | None) -> tuple[list[Path], Path]:
    """The files a task reads: its definition, data, the media of the rows evaluated, scorer files."""
    files = [task.data_path]
    if task.source.endswith((".yaml", ".yml")):
        files.append(Path(task.source).resolve())
    for sample in task.samples(limit):
        files += [Path(part.path).resolve() for part in sample.input if getattr(part, "path", None)]
    for spec in task.config.scorers:
        for value in spec.args.values():
            if isinstance(value, str) and (task.base_dir / value).is_file():
                files.append((task.base_dir / value).resolve())
    files = list(dict.fromkeys(f for f in files if f.is_file()))
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    return files, root


def _load_task(source: str) -> Any:
    from eval_anything.tasks.catalog import Catalog
    from eval_anything.tasks.inference import is_data_file, load_data_task

    path = Path(source)
    if source.endswith((".yaml", ".yml")) and path.is_file():
        return Catalog._load(path)
    if is_data_file(source) and path.is_file():
        return load_data_task(path, announce=False)
    raise BundleError(f"task file {source} is not here (a Python-defined task, or one read from --data-dir, "
                      "cannot be exported)")


def export_run(run_dir: Path, output: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file() or not (run_dir / "results.json").is_file():
        raise BundleError(f"{run_dir} is not a run directory (no manifest.json and results.json)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    members: dict[str, Path] = {}
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file() and not is_lock_file(p)):
        members[f"run/{path.relative_to(run_dir).as_posix()}"] = path
    tasks, notes = [], []
    limit = (manifest.get("settings") or {}).get("limit")
    for described in manifest.get("tasks", []):
        task = _load_task(described["source"])
        if task.content_hash != described.get("hash"):
            raise BundleError(f"task {task.name}: its files changed since the run (hash {task.content_hash[:12]} "
                              f"now, {str(described.get('hash'))[:12]} in the run): edited since, or read from "
                              "--data-dir (published data is not packed: ship the bundle of `eval-anything data "
                              "fetch` beside it)")
        files, root = _task_files(task, limit)
        prefix = f"tasks/{task.name}"
        for f in files:
            members[f"{prefix}/{f.relative_to(root).as_posix()}"] = f
        entry = (Path(task.source).resolve() if task.source.endswith((".yaml", ".yml")) else task.data_path)
        settings = manifest.get("settings") or {}
        generation = task.generation(settings.get("seed", 1234), settings.get("max_new_tokens"),
                                     settings.get("temperature"))
        tasks.append({"name": task.name, "version": task.version, "hash": task.content_hash,
                      "file": f"{prefix}/{entry.relative_to(root).as_posix()}",
                      "generation": {**dataclasses.asdict(generation), "stop": list(generation.stop)},
                      "system": task.config.system, "prompt_template": task.config.prompt})
    model = manifest.get("model") or {}
    model_file = None
    from eval_anything.models import known_traits

    traits = known_traits(model.get("backend"))
    if traits is not None and traits.packs_reference_file and Path(model.get("reference", "")).is_file():
        model_file = f"model/{Path(model['reference']).name}"
        members[model_file] = Path(model["reference"])
    elif traits is not None and traits.local_weights and model.get("commit"):
        notes.append(f"the Hub model {model.get('reference')} is not packed; the rerun loads its commit "
                     f"{model['commit']} from the Hugging Face cache (or the Hub)")
    elif traits is not None and traits.local_weights:
        notes.append(f"the model folder {model.get('reference')} is not packed; give it with --model on rerun")
    info = {"format": BUNDLE_FORMAT, "run_id": manifest.get("run_id"), "command": manifest.get("command"),
            "model": {k: model.get(k) for k in ("backend", "reference", "args", "commit") if k in model},
            "model_file": model_file,
            "settings": manifest.get("settings"), "tasks": tasks,
            "files": {name: {"size": p.stat().st_size, "sha256": file_sha256(p)} for name, p in members.items()},
            "notes": notes}
    output.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(output, "w:gz") as tar:
        data = json.dumps(info, indent=2).encode()
        header = tarfile.TarInfo(BUNDLE_FILE)
        header.size = len(data)
        tar.addfile(header, io.BytesIO(data))
        for name, path in members.items():
            tar.add(path, arcname=name, recursive=False)
    return info


def unpack(archive: Path, into: Path | None = None) -> Path:
    """Extract a bundle safely (no links or paths leaving the folder) and check every file's hash."""
    archive = Path(archive)
    digest = file_sha256(archive)[:16]
    target = Path(into) if into is not None else Path(tempfile.gettempdir()) / f"eval-anything-bundle-{digest}"
    if (target / BUNDLE_FILE).is_file() and (target / ".complete").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(target, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(f"{archive}: not a readable bundle: {exc}") from None
    info = read_info(target)
    for name, meta in info["files"].items():
        path = target / name
        if not path.is_file() or file_sha256(path) != meta["sha256"]:
            raise BundleError(f"{archive}: {name} is missing or differs from its recorded sha256")
    (target / ".complete").write_text("ok\n")
    return target


def read_info(folder: Path) -> dict[str, Any]:
    path = Path(folder) / BUNDLE_FILE
    if not path.is_file():
        raise BundleError(f"{folder}: no {BUNDLE_FILE}; not an eval-anything reproduction bundle")
    info = json.loads(path.read_text(encoding="utf-8"))
    if info.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: bundle format {info.get('format')!r}; this version reads {BUNDLE_FORMAT}")
    return info


NOT_FROM_BUNDLE = ("from_bundle", "tasks", "model", "output_dir", "include_path", "data_dir", "argv")
"""`run --from`: these come from this command line; every other run argument from the bundle's command
(`--model-args` too, unless `--model` is given here)."""


def apply_bundle(arguments: RunArguments) -> RunArguments:
    """The arguments of `run --from BUNDLE` as the original run's, with the bundled task files."""
    from eval_anything.flags import flag_names
    from eval_anything.settings import RunArguments, parse_run_command

    bundle = arguments.from_bundle
    folder = unpack(bundle, Path(arguments.output_dir) / ".bundles" / file_sha256(Path(bundle))[:16])
    info = read_info(folder)
    original = parse_run_command(list(info.get("command") or [])[1:])
    changes: dict[str, Any] = {}
    if original is not None:
        changes = {key: getattr(original, key) for key in flag_names(RunArguments) if key not in NOT_FROM_BUNDLE
                   and not (key == "model_args" and arguments.model is not None)}
    model = arguments.model
    if model is None:
        described = info.get("model") or {}
        if info.get("model_file"):  # packed by a backend that packs its reference file
            model = f"{described['backend']}:{folder / info['model_file']}"
        elif described.get("commit"):  # a Hub model: the commit it ran, not wherever its branch moved since
            model = f"{described['backend']}:{described['reference']}@{described['commit']}"
        elif described.get("backend"):
            model = f"{described['backend']}:{described['reference']}"
    arguments = dataclasses.replace(arguments, **changes, model=model)
    if was_redacted(arguments.model_args) or was_redacted(arguments.judge_args):
        print("eval-anything: note: the bundle's command had secrets redacted; give them again if needed",
              file=sys.stderr)
    settings = info.get("settings") or {}
    arguments = dataclasses.replace(arguments, **{key: settings[key] for key in ("limit", "seed", "max_new_tokens")
                                                  if key in settings},
                                    tasks=",".join(str(folder / t["file"]) for t in info["tasks"]))
    print(f"eval-anything: rerunning {info.get('run_id')} from {bundle}: model {arguments.model}, "
          f"tasks {', '.join(t['name'] for t in info['tasks'])}", file=sys.stderr)
    return arguments
