"""The runner: task -> backend -> scorers -> run directory, resumable at sample granularity."""
from __future__ import annotations

import hashlib
import itertools
import json
import re
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from eval_anything.datamodel import Sample, SampleResult, Score
from eval_anything.judges.engine import JudgeEngine, JudgeSettings
from eval_anything.manifest import build_manifest, read_lineage
from eval_anything.models import LazyModel, Model, ModelSpec
from eval_anything.models.embedded import NAME as EMBEDDED_NAME, cache_root
from eval_anything.rundir import RunDirectory, SampleLog
from eval_anything.scorers import Attempt
from eval_anything.results import JUDGE_COUNTS, aggregate, judge_cost
from eval_anything.suite.groups import group_scores
from eval_anything.tasks import DataFileError, Task

COMMIT_INTERVAL_S = 1.0
"""Sample logs are fsynced at least this often while samples finish (and after every batch)."""
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
    judge: JudgeSettings | None = None
    """Who judges tasks with judge scorers; None means the embedded model, labelled a weak judge."""
    generators: str | None = None
    """Which generator renders each modality of tagged answers, e.g. "audio=espeak"; None: espeak
    for audio when espeak-ng is installed."""

    def identity(self) -> dict[str, Any]:
        return {"limit": self.limit, "seed": self.seed, "max_new_tokens": self.max_new_tokens}

    def generator_spec(self) -> str:
        if self.generators is not None:
            return self.generators
        return "audio=espeak" if shutil.which("espeak-ng") else ""

    def generator_table(self) -> dict:
        from eval_anything.suite.generators import parse_generators

        return parse_generators(self.generator_spec())

    def judge_settings(self) -> JudgeSettings:
        if self.judge is not None:
            return self.judge
        return JudgeSettings(ModelSpec("embedded", EMBEDDED_NAME), weak_default=True, seed=self.seed,
                             cache_path=cache_root() / "judge-cache.sqlite")


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
    judge_calls: int = 0
    """Requests the judge model answered in this invocation (cache hits excluded)."""

    @property
    def ok(self) -> bool:
        return all(t["status"] != ERROR for t in self.results["tasks"].values())


def run_id(spec: ModelSpec, tasks: Sequence[Task], settings: RunSettings) -> str:
    identity = {"model": spec.describe(), "settings": settings.identity(),
                "tasks": [(t.name, t.version, t.content_hash) for t in tasks]}
    if any(t.judge_scorers for t in tasks):  # judged scores depend on the judge
        identity["judge"] = settings.judge_settings().identity()
    if any(t.config.output_format == "tagged" for t in tasks):  # and rendered media on the generators
        identity["generators"] = settings.generator_spec()
    lineage = read_lineage(spec)
    if lineage:  # a checkpoint retrained into the same folder is another model
        identity["lineage"] = lineage
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{spec.backend}-{Path(spec.reference).name}").strip("-")
    return f"{slug}-{digest}"


def evaluate(spec: ModelSpec, tasks: Sequence[Task], settings: RunSettings = RunSettings(),
             progress: ProgressSink = NoProgress()) -> RunReport:
    """Evaluate `tasks` with the model of `spec`, resuming whatever an earlier invocation finished."""
    run_dir = RunDirectory(settings.output_dir / run_id(spec, tasks, settings))
    previous = (run_dir.read_results() or {}).get("tasks", {})
    manifest = build_manifest(spec, tasks, settings, run_dir.path.name)
    run_dir.write_manifest({**manifest, "status": "running"})
    model = LazyModel(spec)
    judges = JudgeEngine(settings.judge_settings()) if any(t.judge_scorers for t in tasks) else None
    report = RunReport(run_dir.path, {})
    outcomes: dict[str, dict[str, Any]] = {}
    status = "interrupted"
    try:
        for task in tasks:
            outcomes[task.name] = _run_task(task, model, judges, run_dir, settings, previous.get(task.name),
                                            progress, report)
            run_dir.write_results(_results(manifest, outcomes, "running", judges))
        status = COMPLETE
    finally:
        if model.model is not None:
            manifest["model"] = {**spec.describe(), "loaded": model.model.describe()}
        if judges is not None:
            manifest["judge"] = judges.describe()
            report.judge_calls = judges.model.generated
            judges.close()
        model.close()
        report.generated = model.generated
        report.results = _results(manifest, outcomes, status, judges)
        run_dir.write_results(report.results)
        run_dir.write_manifest({**manifest, "status": status})
    return report


def _results(manifest: dict[str, Any], outcomes: dict[str, Any], status: str,
             judges: JudgeEngine | None) -> dict[str, Any]:
    results = {"run_id": manifest["run_id"], "status": status, "model": manifest["model"], "tasks": dict(outcomes)}
    groups = group_scores(outcomes)
    if groups:
        results["groups"] = groups
    if judges is not None:
        judged = [t["judge"] for t in outcomes.values() if "judge" in t]
        totals = {key: sum(j[key] for j in judged) for key in JUDGE_COUNTS}
        price = judges.settings.price_per_million
        results["judge"] = {**judges.describe(), **totals, **judge_cost(totals, price)}
    return results


def _run_task(task: Task, model: LazyModel, judges: JudgeEngine | None, run_dir: RunDirectory,
              settings: RunSettings, previous: dict[str, Any] | None, progress: ProgressSink,
              report: RunReport) -> dict[str, Any]:
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
                _generate(task, model.get(), pending, log, settings, progress, judges)
            finally:
                log.close()
                progress.finish()
    except DataFileError as exc:
        return {**header, "status": ERROR, "reason": str(exc), **_summary(task, log, judges)}
    return {**header, "status": COMPLETE, **_summary(task, log, judges)}


def _summary(task: Task, log: SampleLog, judges: JudgeEngine | None) -> dict[str, Any]:
    summary = aggregate(task, log.completed().values())
    if "judge" in summary and judges is not None:
        summary["judge"].update(judge_cost(summary["judge"], judges.settings.price_per_million))
        summary["judge"]["weak_default"] = judges.settings.weak_default
    return summary


def _generate(task: Task, model: Model, pending: Iterable[Sample], log: SampleLog, settings: RunSettings,
              progress: ProgressSink, judges: JudgeEngine | None) -> None:
    render = _answer_renderer(task, settings, log.path.parent.parent / "media" / task.name)
    finished = _generated(task, model, pending, settings, render)
    if task.judge_scorers:
        assert judges is not None
        finished = judges.score(task.judge_scorers, task.name, finished)
    since_commit, last_commit = 0, time.monotonic()
    for sample, attempts, scores in finished:
        record = SampleResult(sample_id=sample.id, requests=tuple(a.request for a in attempts),
                              outputs=tuple(a.output for a in attempts), scores=scores, target=sample.target).to_json()
        if task.config.breakdown:
            record["breakdown"] = _breakdown_key(task.config.breakdown, sample, attempts)
        log.append(record)
        progress.advance()
        since_commit += 1
        if since_commit >= model.batch_size or time.monotonic() - last_commit > COMMIT_INTERVAL_S:
            log.commit()
            since_commit, last_commit = 0, time.monotonic()
    log.commit()


def _answer_renderer(task: Task, settings: RunSettings, media_dir: Path) -> Callable[[Attempt], Attempt]:
    """For tagged any-to-any answers: text, native media, and media rendered from instructions."""
    if task.config.output_format != "tagged":
        return lambda attempt: attempt
    from eval_anything.suite.outputs import render_answer

    generators = settings.generator_table()
    return lambda a: Attempt(a.request, render_answer(a.output, generators, media_dir, f"{a.request.sample_id}_{a.request.variant}"))


def _breakdown_key(columns: Sequence[str], sample: Sample, attempts: Sequence[Attempt]) -> str:
    def value(column: str) -> str:
        if column == "chosen":
            return str(attempts[0].output.metadata.get("chosen", "?"))
        return str(sample.metadata.get(column, "?"))

    return "+".join(value(c) for c in columns)


def _generated(task: Task, model: Model, pending: Iterable[Sample], settings: RunSettings,
               render: Callable[[Attempt], Attempt]) -> Iterator[tuple[Sample, list[Attempt], dict[str, Score]]]:
    """Samples as their generations complete, with their rule-based scores."""
    generation = task.generation(settings.seed, settings.max_new_tokens)
    window = max(256, model.batch_size * 16)
    for chunk in _batched(pending, window):
        samples = {s.id: s for s in chunk}
        requests = [r for s in chunk for r in task.requests(s, generation)]
        expected = {sid: sum(1 for r in requests if r.sample_id == sid) for sid in samples}
        requests.sort(key=lambda r: -len(r.prompt_text))  # similar lengths batch together
        attempts: dict[str, list[Attempt]] = defaultdict(list)
        for request, output in model.stream(requests):
            sid = request.sample_id
            attempts[sid].append(render(Attempt(request, output)))
            if len(attempts[sid]) == expected[sid]:
                done = sorted(attempts.pop(sid), key=lambda a: a.request.variant)
                yield samples[sid], done, task.score(samples[sid], done)


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
