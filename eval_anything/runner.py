"""The runner: task -> backend -> scorers -> run directory, resumable at sample granularity."""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, Sequence

from eval_anything.datamodel import Sample, SampleResult
from eval_anything.manifest import build_manifest
from eval_anything.models import Model, ModelSpec, load_model
from eval_anything.rundir import RunDirectory, SampleLog
from eval_anything.scorers import Attempt
from eval_anything.stats import AGGREGATES
from eval_anything.tasks import DataFileError, Task

COMPLETE, NOT_APPLICABLE, ERROR = "complete", "not_applicable", "error"


@dataclass(frozen=True)
class RunSettings:
    """Run-wide settings; everything that changes results is part of the run id."""

    output_dir: Path = Path("runs")
    limit: int | None = None
    """Evaluate only the first N samples of each task."""
    seed: int = 1234
    max_new_tokens: int | None = None
    """Override every task's generation length."""
    command: tuple[str, ...] = ()
    """The command line, recorded (secrets redacted) in the manifest."""

    def identity(self) -> dict[str, Any]:
        return {"limit": self.limit, "seed": self.seed, "max_new_tokens": self.max_new_tokens}


class ProgressSink(Protocol):
    def start(self, task: str, total: int, done: int) -> None: ...
    def advance(self, count: int = 1) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    def start(self, task: str, total: int, done: int) -> None: ...
    def advance(self, count: int = 1) -> None: ...
    def finish(self) -> None: ...


@dataclass
class RunReport:
    run_dir: Path
    results: dict[str, Any]
    generated: int = 0
    """Requests the model generated in this invocation (0 when a finished run is rerun)."""
    resumed: dict[str, int] = field(default_factory=dict)
    """Samples per task taken from an earlier, interrupted invocation."""

    @property
    def ok(self) -> bool:
        return all(t["status"] != ERROR for t in self.results["tasks"].values())


def run_id(spec: ModelSpec, tasks: Sequence[Task], settings: RunSettings) -> str:
    identity = {"model": spec.describe(), "settings": settings.identity(),
                "tasks": [(t.name, t.version, t.content_hash) for t in tasks]}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{spec.backend}-{Path(spec.reference).name}").strip("-")
    return f"{slug}-{digest}"


class _LazyModel:
    """Loads the backend only when a task has work for it, so a finished rerun loads nothing."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.model: Model | None = None

    def get(self) -> Model:
        if self.model is None:
            self.model = load_model(self.spec)
        return self.model

    @property
    def generated(self) -> int:
        return self.model.generated if self.model else 0

    def close(self) -> None:
        if self.model is not None:
            self.model.close()


def evaluate(spec: ModelSpec, tasks: Sequence[Task], settings: RunSettings = RunSettings(),
             progress: ProgressSink = NoProgress()) -> RunReport:
    """Evaluate `tasks` with the model of `spec`, resuming whatever an earlier invocation finished."""
    run_dir = RunDirectory(settings.output_dir / run_id(spec, tasks, settings))
    previous = (run_dir.read_results() or {}).get("tasks", {})
    manifest = build_manifest(spec, tasks, settings, run_dir.path.name)
    run_dir.write_manifest({**manifest, "status": "running"})
    model = _LazyModel(spec)
    report = RunReport(run_dir.path, {})
    outcomes: dict[str, dict[str, Any]] = {}
    status = "interrupted"
    try:
        for task in tasks:
            outcomes[task.name] = _run_task(task, model, run_dir, settings, previous.get(task.name), progress, report)
            run_dir.write_results(_results(manifest, outcomes, "running"))
        status = COMPLETE
    finally:
        if model.model is not None:
            manifest["model"] = {**spec.describe(), "loaded": model.model.describe()}
        model.close()
        report.generated = model.generated
        report.results = _results(manifest, outcomes, status)
        run_dir.write_results(report.results)
        run_dir.write_manifest({**manifest, "status": status})
    return report


def _results(manifest: dict[str, Any], outcomes: dict[str, Any], status: str) -> dict[str, Any]:
    return {"run_id": manifest["run_id"], "status": status, "model": manifest["model"], "tasks": dict(outcomes)}


def _run_task(task: Task, model: _LazyModel, run_dir: RunDirectory, settings: RunSettings,
              previous: dict[str, Any] | None, progress: ProgressSink, report: RunReport) -> dict[str, Any]:
    header = {"task": task.name, "version": task.version, "hash": task.content_hash}
    if previous and previous.get("status") == NOT_APPLICABLE:
        return previous
    log = run_dir.samples(task.name)
    done = log.completed()
    try:
        pending = _peekable(s for s in task.samples(settings.limit) if s.id not in done)
        if pending.has_more():
            missing = model.get().missing_modalities(task.modalities)
            if missing:
                reason = f"{model.spec.label} does not take {', '.join(sorted(m.value for m in missing))} input"
                return {**header, "status": NOT_APPLICABLE, "reason": reason}
            report.resumed[task.name] = len(done)
            total = task.count() if settings.limit is None else min(task.count(), settings.limit)
            progress.start(task.name, total, len(done))
            try:
                _generate(task, model.get(), pending, log, settings, progress)
            finally:
                log.close()
                progress.finish()
    except DataFileError as exc:
        return {**header, "status": ERROR, "reason": str(exc), **aggregate(task, log.completed().values())}
    return {**header, "status": COMPLETE, **aggregate(task, log.completed().values())}


def _generate(task: Task, model: Model, pending: Iterable[Sample], log: SampleLog,
              settings: RunSettings, progress: ProgressSink) -> None:
    generation = task.generation(settings.seed, settings.max_new_tokens)
    window = max(256, model.batch_size * 16)
    for chunk in _batched(pending, window):
        samples = {s.id: s for s in chunk}
        requests = [r for s in chunk for r in task.requests(s, generation)]
        expected = {sid: sum(1 for r in requests if r.sample_id == sid) for sid in samples}
        requests.sort(key=lambda r: -len(r.prompt_text))  # similar lengths batch together
        attempts: dict[str, list[Attempt]] = defaultdict(list)
        since_commit = 0
        for request, output in model.stream(requests):
            sid = request.sample_id
            attempts[sid].append(Attempt(request, output))
            since_commit += 1
            if len(attempts[sid]) == expected[sid]:
                log.append(_finish_sample(task, samples[sid], attempts.pop(sid)).to_json())
                progress.advance()
            if since_commit >= model.batch_size:
                log.commit()
                since_commit = 0
        log.commit()


def _finish_sample(task: Task, sample: Sample, attempts: list[Attempt]) -> SampleResult:
    attempts.sort(key=lambda a: a.request.variant)
    return SampleResult(sample_id=sample.id, requests=tuple(a.request for a in attempts),
                        outputs=tuple(a.output for a in attempts), scores=task.score(sample, attempts),
                        target=sample.target)


def aggregate(task: Task, records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Each scorer's metric (its declared aggregate ± standard error) and counts, from per-sample records."""
    records = list(records)
    metrics = {}
    for scorer, config in zip(task.scorers, task.config.scorers):
        scores = [r["scores"][scorer.name] for r in records if scorer.name in r["scores"]]
        values = [s["value"] for s in scores if s["error"] is None]
        statistic, stderr = AGGREGATES[config.aggregate]
        metrics[scorer.name] = {
            "aggregate": config.aggregate,
            "value": _finite(statistic(values)), "stderr": _finite(stderr(values)), "n": len(values),
            "errors": sum(1 for s in scores if s["error"] is not None),
            "extraction_failures": sum(1 for s in scores if s.get("extraction_failed")),
        }
    errored = sum(1 for r in records if any(s["error"] is not None for s in r["scores"].values()))
    outputs = [o for r in records for o in r["outputs"]]
    return {
        "metrics": metrics,
        "counts": {"samples": len(records), "scored": len(records) - errored, "errored": errored},
        "usage": {"requests": len(outputs),
                  "input_tokens": sum(o["usage"]["input_tokens"] for o in outputs),
                  "output_tokens": sum(o["usage"]["output_tokens"] for o in outputs),
                  "generation_s": round(sum(o["latency_s"] for o in outputs), 3)},
    }


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def _batched(items: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class _peekable:
    """An iterator that can say whether anything is left without losing it."""

    def __init__(self, items: Iterable[Sample]) -> None:
        self._iterator = iter(items)
        self._head: list[Sample] = []

    def has_more(self) -> bool:
        if not self._head:
            self._head = list(itertools.islice(self._iterator, 1))
        return bool(self._head)

    def __iter__(self) -> Iterator[Sample]:
        yield from self._head
        self._head = []
        yield from self._iterator
