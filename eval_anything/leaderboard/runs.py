"""Reading run directories for boards and gates: manifest, results and sample logs, read-only.

Nothing here imports torch, transformers or a backend: a board is built from files alone.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from eval_anything.files import read_log

MANIFEST, RESULTS, SAMPLES_DIR = "manifest.json", "results.json", "samples"


class RunDirError(ValueError):
    """A path that is not a readable run directory, with the reason."""


@dataclass
class Run:
    """One run directory as the leaderboard and the gate see it."""

    path: Path
    manifest: dict[str, Any]
    results: dict[str, Any]
    label: str = ""
    """A short name for tables: backend:model, made unique among the runs shown."""
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """results.json's per-task entries, by task name."""
    _components: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def run_id(self) -> str:
        return str(self.results.get("run_id") or self.manifest.get("run_id") or self.path.name)

    @property
    def model(self) -> dict[str, Any]:
        return self.results.get("model") or self.manifest.get("model") or {}

    @property
    def lineage(self) -> dict[str, Any] | None:
        """Where the checkpoint came from (base model, method, data, config hash), when recorded."""
        lineage = self.manifest.get("lineage")
        return lineage if isinstance(lineage, dict) and lineage else None

    def derived_components(self, task: str) -> dict[str, dict[str, dict[str, Any]]]:
        """Means of the composite components a scorer keeps per sample (the S_AMG judge's ``S_i``,
        ``S_ij``, ``alpha`` and ``terms`` details), by scorer then part; {} when none are logged.

        A pair's term is averaged over every scored sample (0 where the pair was not chosen), so the
        terms add up to the composite; ``S_i``, ``S_ij`` and ``alpha`` over the samples that have them."""
        if task not in self._components:
            self._components[task] = _component_means(self.iter_samples(task))
        return self._components[task]

    def protocol(self, task: str) -> str | None:
        """The scoring protocol the task was run under (e.g. paper): results.json's, else the
        manifest's; None for a task with one way of scoring only, or a run from before protocols."""
        return task_protocol(self.tasks.get(task), self.manifest, task)

    def samples_path(self, task: str) -> Path:
        return self.path / SAMPLES_DIR / f"{task}.jsonl"

    def iter_samples(self, task: str) -> Iterator[dict[str, Any]]:
        """The task's sample records in file order; a line torn by a crash ends the log."""
        path = self.samples_path(task)
        if not path.exists():
            return
        yield from read_log(path)

    def resolve_media(self, reference: str) -> Path | None:
        """A media path from a sample log: absolute, or relative to the run directory or the cwd."""
        path = Path(reference)
        for candidate in ((path,) if path.is_absolute() else (self.path / path, Path.cwd() / path)):
            if candidate.is_file():
                return candidate
        return None


def task_protocol(entry: Any, manifest: dict[str, Any], task: str) -> str | None:
    """A task's protocol from its results.json entry, else from the manifest's task list."""
    if isinstance(entry, dict) and entry.get("protocol"):
        return str(entry["protocol"])
    for described in manifest.get("tasks") or []:
        if isinstance(described, dict) and described.get("name") == task and described.get("protocol"):
            return str(described["protocol"])
    return None


COMPONENT_DETAILS = ("S_i", "S_ij", "alpha", "terms")
"""Per-sample score details that are components of a composite score: {name: number} each."""


def _component_means(records: Iterator[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    first = next(records, None)
    if first is None or not any(isinstance(s, dict) and set(COMPONENT_DETAILS) & set(s.get("details") or {})
                                for s in (first.get("scores") or {}).values()):
        return {}
    sums: dict[str, dict[str, list[float]]] = {}
    scored: dict[str, int] = {}
    for record in (first, *records):
        for scorer, score in (record.get("scores") or {}).items():
            details = score.get("details") or {}
            if score.get("value") is None or not set(COMPONENT_DETAILS) & set(details):
                continue
            scored[scorer] = scored.get(scorer, 0) + 1
            parts = sums.setdefault(scorer, {})
            for name in COMPONENT_DETAILS:
                for key, value in (details.get(name) or {}).items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        parts.setdefault(f"{name} {key}", []).append(float(value))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for scorer, parts in sums.items():
        out[scorer] = {}
        for part in sorted(parts, key=lambda p: (COMPONENT_DETAILS.index(p.split()[0]), len(p), p)):
            values = parts[part]
            over = scored[scorer] if part.startswith("terms ") else len(values)  # an unchosen pair's term is 0
            out[scorer][part] = {"value": sum(values) / over, "n": over}
    return out


def _read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc})") from exc


def load_run(path: Path | str) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"{path}: no such run directory")
    if not (path / RESULTS).exists():
        raise RunDirError(f"{path}: no {RESULTS} (not a run directory, or the run never started)")
    results = _read_json(path / RESULTS)
    manifest = _read_json(path / MANIFEST) if (path / MANIFEST).exists() else {}
    tasks = results.get("tasks")
    if not isinstance(tasks, dict):
        raise RunDirError(f"{path}: {RESULTS} has no 'tasks' mapping")
    return Run(path=path, manifest=manifest, results=results, tasks=tasks)


def model_label(model: dict[str, Any]) -> str:
    backend = model.get("backend", "?")
    reference = str(model.get("reference", "?")).rstrip("/")
    name = re.split(r"[\\/]", reference)[-1] or reference
    return f"{backend}:{name}"


def load_runs(paths: list[Path | str]) -> list[Run]:
    """Runs in the order given, each labelled by its model, made unique with the run id when shared."""
    runs = [load_run(p) for p in paths]
    labels = [model_label(r.model) for r in runs]
    for run, label in zip(runs, labels):
        run.label = label if labels.count(label) == 1 else f"{label} ({run.run_id.rsplit('-', 1)[-1]})"
    seen: dict[str, int] = {}
    for run in runs:  # the same run given twice still gets distinct labels
        seen[run.label] = seen.get(run.label, 0) + 1
        if seen[run.label] > 1:
            run.label = f"{run.label} #{seen[run.label]}"
    return runs
