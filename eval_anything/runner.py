"""The runner: task -> backend -> scorers -> run directory, resumable at sample granularity."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from eval_anything.composites import group_scores
from eval_anything.datamodel import RunStatus, Sample, Status
from eval_anything.distributed import DataParallel, data_parallel, merge_shards, share_of
from eval_anything.errors import RunDirectoryError
from eval_anything.files import read_log
from eval_anything.generation import NoProgress, Pipeline, ProgressSink, generate
from eval_anything.heap import startup_objects_left_out_of_collections
from eval_anything.judges.engine import JudgeEngine
from eval_anything.locking import run_directory_lock
from eval_anything.manifest import build_manifest, read_lineage
from eval_anything.models import LazyModel, ModelSpec
from eval_anything.results import JUDGE_COUNTS, aggregate, judge_cost
from eval_anything.rundir import RunDirectory, SampleLog
from eval_anything.settings import RunSettings
from eval_anything.tasks import DataFileError, Task


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
    primary: bool = True
    """False on ranks other than 0 of a data-parallel run: they write shards only, and their
    `results` carry each task's status, not its scores (rank 0 merges and writes results.json)."""

    @property
    def ok(self) -> bool:
        return all(t["status"] != Status.ERROR for t in self.results["tasks"].values())


@dataclass(frozen=True)
class RunContext:
    """What every task of one run shares."""

    model: LazyModel
    judges: JudgeEngine | None
    """Judges the tasks with judge scorers; None when no task has one."""
    run_dir: RunDirectory
    settings: RunSettings
    progress: ProgressSink
    report: RunReport
    """Filled in as tasks run: what was resumed."""
    parallel: DataParallel = DataParallel()

    def pipeline(self, task: Task) -> Pipeline:
        return Pipeline(task, self.model, self.settings, self.judges, self.progress, self.parallel.check)


def run_id(spec: ModelSpec, tasks: Sequence[Task], settings: RunSettings) -> str:
    identity = {"model": spec.describe(), "settings": settings.identity(),
                "tasks": [(t.name, t.version, t.content_hash) for t in tasks]}
    if any(t.judge_scorers for t in tasks):  # judged scores depend on the judge
        identity["judge"] = settings.judge_settings().for_tasks(t.name for t in tasks).identity()
    if any(t.config.output_format == "tagged" for t in tasks):  # and rendered media on the generators
        identity["generators"] = settings.generator_identity()
    lineage = read_lineage(spec)
    if lineage:  # a checkpoint retrained into the same folder is another model
        identity["lineage"] = lineage
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{spec.backend}-{Path(spec.reference).name}").strip("-")
    return f"{slug}-{digest}"


def evaluate(spec: ModelSpec, tasks: Sequence[Task], settings: RunSettings = RunSettings(),
             progress: ProgressSink = NoProgress()) -> RunReport:
    """Evaluate `tasks` with the model of `spec`, resuming whatever an earlier invocation finished."""
    with startup_objects_left_out_of_collections():
        return _evaluate(spec, tasks, settings, progress)


def _evaluate(spec: ModelSpec, tasks: Sequence[Task], settings: RunSettings, progress: ProgressSink) -> RunReport:
    parallel = data_parallel(settings.rank_timeout)
    if not parallel.primary:
        progress = NoProgress()
    run_dir = RunDirectory(settings.output_dir / run_id(spec, tasks, settings))
    with run_directory_lock(run_dir.path, wait=settings.wait_for_lock, rank=parallel.rank):
        return _evaluate_locked(spec, tasks, settings, progress, parallel, run_dir)


def _evaluate_locked(spec: ModelSpec, tasks: Sequence[Task], settings: RunSettings, progress: ProgressSink,
                     parallel: DataParallel, run_dir: RunDirectory) -> RunReport:
    previous = (run_dir.read_results() or {}).get("tasks", {})
    manifest = build_manifest(spec, tasks, settings, run_dir.path.name)
    if any(t.config.output_format == "tagged" for t in tasks):  # what renders their media, and how
        manifest["generators"] = {m.value: g.describe() for m, g in settings.generator_table().items()}
    if parallel.world > 1:
        manifest["data_parallel"] = {"world_size": parallel.world}
    judges = _judge_engine(settings, tasks)
    if parallel.primary:
        run_dir.write_manifest({**manifest, "status": RunStatus.RUNNING})
    model = LazyModel(spec)
    report = RunReport(run_dir.path, {}, primary=parallel.primary)
    context = RunContext(model, judges, run_dir, settings, progress, report, parallel)
    outcomes: dict[str, dict[str, Any]] = {}
    status = RunStatus.INTERRUPTED
    failing = False
    try:
        for task in tasks:
            outcomes[task.name] = _run_task(task, context, previous.get(task.name))
            if parallel.primary:
                run_dir.write_results(_results(manifest, outcomes, RunStatus.RUNNING, judges))
        status = RunStatus.COMPLETE
    except OSError as exc:
        failing = True
        named = _named_fault(exc, run_dir)
        if named is exc:
            raise
        raise named from exc
    except BaseException:
        failing = True
        raise
    finally:
        # with an error on its way out, a file that cannot be written here is not the one to report
        with contextlib.suppress(RunDirectoryError) if failing else contextlib.nullcontext():
            _finish(spec, manifest, context, outcomes, status)
    return report


def _finish(spec: ModelSpec, manifest: dict[str, Any], context: RunContext, outcomes: dict[str, Any],
            status: RunStatus) -> None:
    """Release the model and judges, count what they did, and write results and manifest with `status`."""
    model, judges, report, parallel, run_dir = (context.model, context.judges, context.report,
                                                context.parallel, context.run_dir)
    try:
        if model.model is not None:
            manifest["model"] = {**spec.describe(), "loaded": model.model.describe()}
        if judges is not None:
            manifest["judge"] = judges.describe()
            report.judge_calls = judges.generated
            judges.close()
    finally:
        model.close()
    report.generated = model.generated
    if status == RunStatus.COMPLETE and parallel.world > 1:  # every rank is here: count all ranks' requests
        report.generated = parallel.total(model.generated)
        report.judge_calls = parallel.total(report.judge_calls)
    report.results = _results(manifest, outcomes, status, context.judges)
    if parallel.primary:
        run_dir.write_results(report.results)
        run_dir.write_manifest({**manifest, "status": status})
    if status == RunStatus.COMPLETE:  # an interrupted rank must not wait on a barrier the others never reach
        parallel.close()


_WRITE_FAULTS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


def _judge_engine(settings: RunSettings, tasks: Sequence[Task]) -> JudgeEngine | None:
    """The judges of the tasks with judge scorers (None when none has one), their cache opened (a cache
    that cannot be opened, read or written raises its own JudgeCacheError, naming the file)."""
    if not any(t.judge_scorers for t in tasks):
        return None
    return JudgeEngine(settings.judge_settings().for_tasks(t.name for t in tasks))


def _named_fault(exc: OSError, run_dir: RunDirectory) -> BaseException:
    """The one-line error for an OS fault that escaped the run: a file of the run directory (media,
    say) that could not be written; anything else as it is."""
    where = Path(exc.filename) if isinstance(exc.filename, (str, Path)) else None
    if where is not None and run_dir.path.resolve() in (where.resolve(), *where.resolve().parents):
        return RunDirectoryError(where, exc)
    if where is None and exc.errno in _WRITE_FAULTS:
        return RunDirectoryError(run_dir.path, exc)
    return exc


def _results(manifest: dict[str, Any], outcomes: dict[str, Any], status: RunStatus,
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


def _run_task(task: Task, context: RunContext, previous: dict[str, Any] | None) -> dict[str, Any]:
    header = {"task": task.name, "version": task.version, "hash": task.content_hash,
              **({"protocol": task.protocol} if task.protocol else {})}
    if previous and previous.get("status") == Status.NOT_APPLICABLE:
        return previous
    if context.parallel.world > 1:
        return _run_share(task, context, header)
    run_dir, limit = context.run_dir, context.settings.limit
    if run_dir.shards(task.name):  # a data-parallel run was interrupted: keep what its ranks finished
        try:
            run_dir.merge_shards(task.name, (s.id for s in task.samples(limit)))
        except DataFileError as exc:
            return {**header, "status": Status.ERROR, "reason": str(exc)}
    log = run_dir.samples(task.name)
    done = log.completed()
    try:
        pending = _peekable(s for s in task.samples(limit) if s.id not in done)
        if pending.has_more():
            reason = _inapplicable(task, context.model)
            if reason:
                return {**header, "status": Status.NOT_APPLICABLE, "reason": reason}
            context.report.resumed[task.name] = len(done)
            total = task.count() if limit is None else min(task.count(), limit)
            generate(context.pipeline(task), pending, log, total, len(done))
    except DataFileError as exc:
        return {**header, "status": Status.ERROR, "reason": str(exc), **_summary(task, log, context.judges)}
    return {**header, "status": Status.COMPLETE, **_summary(task, log, context.judges)}


def _run_share(task: Task, context: RunContext, header: dict[str, Any]) -> dict[str, Any]:
    """One rank's share of a task, appended to this rank's shard; after every rank is done, rank 0
    merges the shards into `<task>.jsonl` in the task's sample order and summarises."""
    parallel, run_dir = context.parallel, context.run_dir
    parallel.barrier()  # every rank reads the logs before any appends to them
    log = run_dir.shard(task.name, parallel.rank, parallel.world)
    outcome: dict[str, Any] = {**header, "status": Status.COMPLETE}
    try:
        share = share_of(task, run_dir, parallel, context.settings.limit)
        pending = _peekable(share.pending)
        # rank 0 decides the task's status, so it looks at the model whenever any rank has work
        if pending.has_more() or (parallel.primary and share.any_left):
            reason = _inapplicable(task, context.model)
            if reason:
                outcome = {**header, "status": Status.NOT_APPLICABLE, "reason": reason}
            elif pending.has_more():
                context.report.resumed[task.name] = share.finished
                generate(context.pipeline(task), pending, log, share.owned, share.finished)
    except DataFileError as exc:
        outcome = {**header, "status": Status.ERROR, "reason": str(exc)}
    parallel.barrier()  # every shard is durable
    if not parallel.primary or outcome["status"] == Status.NOT_APPLICABLE:
        return outcome
    main = run_dir.samples(task.name)
    merge_shards(task, run_dir, context.settings.limit)
    return {**outcome, **_summary(task, main, context.judges)}


def _summary(task: Task, log: SampleLog, judges: JudgeEngine | None) -> dict[str, Any]:
    try:
        summary = aggregate(task, _records(log))
    except _RepeatedSample:  # never written so by the runner: read whole, as `SampleLog.completed()` reads it
        summary = aggregate(task, log.completed().values())
    if "judge" in summary and judges is not None:
        summary["judge"].update(judge_cost(summary["judge"], judges.settings.price_per_million))
        summary["judge"]["weak_default"] = judges.settings.weak_default
    return summary


class _RepeatedSample(Exception):
    pass


def _records(log: SampleLog) -> Iterator[dict[str, Any]]:
    """The finished records, read once and a line at a time so that a task's prompts and outputs
    never sit in memory together; raises `_RepeatedSample` at a sample's second record."""
    if not log.path.exists():
        return
    seen: set[str] = set()
    for record in read_log(log.path):
        if record["id"] in seen:
            raise _RepeatedSample(record["id"])
        seen.add(record["id"])
        yield record


def _inapplicable(task: Task, model: LazyModel) -> str | None:
    """Why the model cannot take this task's inputs, or None when it can."""
    missing = model.get().missing_modalities(task.modalities)
    if not missing:
        return None
    return f"{model.spec.label} does not take {', '.join(sorted(m.value for m in missing))} input"


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
