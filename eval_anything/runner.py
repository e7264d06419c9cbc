"""The runner: task -> backend -> scorers -> run directory, resumable at sample granularity."""
from __future__ import annotations

import dataclasses
import gc
import hashlib
import itertools
import json
import os
import re
import shutil
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from eval_anything.datamodel import GenerationConfig, Request, Sample, SampleResult, Score
from eval_anything.judges.engine import JudgeEngine, JudgeSettings
from eval_anything.files import read_log
from eval_anything.manifest import build_manifest, read_lineage
from eval_anything.models import LazyModel, Model, ModelSpec
from eval_anything.models.embedded import NAME as EMBEDDED_NAME, cache_root
from eval_anything.repeats import combine
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
    repeats: int = 1
    """Generations per sample, repeat r seeded with seed + r; a sample scores the mean of its repeats."""
    temperature: float | None = None
    """Override every task's sampling temperature (repeats of greedy decoding differ little)."""

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"--repeats must be at least 1, not {self.repeats}")
        if self.temperature is not None and self.temperature < 0:
            raise ValueError(f"--temperature must be 0 or more, not {self.temperature}")

    def identity(self) -> dict[str, Any]:
        identity: dict[str, Any] = {"limit": self.limit, "seed": self.seed, "max_new_tokens": self.max_new_tokens}
        if self.repeats != 1:  # only when set, so that the run ids of earlier runs stay as they were
            identity["repeats"] = self.repeats
        if self.temperature is not None:
            identity["temperature"] = self.temperature
        return identity

    def generations(self, task: Task) -> list[GenerationConfig]:
        """The generation settings of each repeat of a task's samples."""
        return [task.generation(self.seed + r, self.max_new_tokens, self.temperature) for r in range(self.repeats)]

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


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run: rank r of `world` evaluates the samples whose
    position in the task's sample order is r modulo `world`, into its own durable shard."""

    rank: int = 0
    world: int = 1
    owns_group: bool = False
    """This process joined the gloo group itself, so it leaves it when the run ends."""

    @property
    def primary(self) -> bool:
        return self.rank == 0

    def mine(self, index: int) -> bool:
        return index % self.world == self.rank

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def total(self, count: int) -> int:
        """The sum of `count` over every rank."""
        if self.world == 1:
            return count
        import torch
        import torch.distributed as dist

        value = torch.tensor([count], dtype=torch.int64)
        dist.all_reduce(value)
        return int(value.item())

    def close(self) -> None:
        """Leave the group once every rank is done: gloo's threads abort the process at exit otherwise."""
        if self.owns_group:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()


BARRIER_TIMEOUT_S = float(os.environ.get("EVAL_ANYTHING_BARRIER_TIMEOUT_S", 24 * 3600))
"""How long a rank that finished its shard waits for the slowest one (ranks' shares differ)."""


def data_parallel() -> DataParallel:
    """Rank and world size from the launcher (`accelerate launch`, `torchrun`: WORLD_SIZE, RANK and
    MASTER_ADDR/PORT); torch is imported, and a gloo group joined, only when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE") or 1)
    if world <= 1:
        return DataParallel()
    import torch.distributed as dist

    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend="gloo", timeout=timedelta(seconds=BARRIER_TIMEOUT_S))
    return DataParallel(dist.get_rank(), dist.get_world_size(), owns_group)


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
    primary: bool = True
    """False on ranks other than 0 of a data-parallel run: they write shards only, and their
    `results` carry each task's status, not its scores (rank 0 merges and writes results.json)."""

    @property
    def ok(self) -> bool:
        return all(t["status"] != ERROR for t in self.results["tasks"].values())


def run_id(spec: ModelSpec, tasks: Sequence[Task], settings: RunSettings) -> str:
    identity = {"model": spec.describe(), "settings": settings.identity(),
                "tasks": [(t.name, t.version, t.content_hash) for t in tasks]}
    if any(t.judge_scorers for t in tasks):  # judged scores depend on the judge
        identity["judge"] = settings.judge_settings().for_tasks(t.name for t in tasks).identity()
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
    with _startup_objects_left_out_of_collections():
        return _evaluate(spec, tasks, settings, progress)


@contextmanager
def _startup_objects_left_out_of_collections() -> Iterator[None]:
    """The objects that exist when a run starts (torch's and transformers' modules: hundreds of
    thousands) are frozen for its duration. Each full collection scanned them all, 25-40 ms in which
    the judge client's event loop waits for the GIL (benchmarks/judge_throughput.py at concurrency 32:
    1.09-1.11 -> 1.07-1.08). Unfrozen afterwards, so cyclic garbage from before the run is still collected."""
    if gc.get_freeze_count():  # the caller froze objects itself: leave that alone
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _evaluate(spec: ModelSpec, tasks: Sequence[Task], settings: RunSettings, progress: ProgressSink) -> RunReport:
    parallel = data_parallel()
    if not parallel.primary:
        progress = NoProgress()
    run_dir = RunDirectory(settings.output_dir / run_id(spec, tasks, settings))
    previous = (run_dir.read_results() or {}).get("tasks", {})
    manifest = build_manifest(spec, tasks, settings, run_dir.path.name)
    if any(t.config.output_format == "tagged" for t in tasks):  # what renders their media, and how
        manifest["generators"] = {m.value: g.describe() for m, g in settings.generator_table().items()}
    if parallel.world > 1:
        manifest["data_parallel"] = {"world_size": parallel.world}
    if parallel.primary:
        run_dir.write_manifest({**manifest, "status": "running"})
    model = LazyModel(spec)
    judges = (JudgeEngine(settings.judge_settings().for_tasks(t.name for t in tasks))
              if any(t.judge_scorers for t in tasks) else None)
    report = RunReport(run_dir.path, {}, primary=parallel.primary)
    outcomes: dict[str, dict[str, Any]] = {}
    status = "interrupted"
    try:
        for task in tasks:
            outcomes[task.name] = _run_task(task, model, judges, run_dir, settings, previous.get(task.name),
                                            progress, report, parallel)
            if parallel.primary:
                run_dir.write_results(_results(manifest, outcomes, "running", judges))
        status = COMPLETE
    finally:
        if model.model is not None:
            manifest["model"] = {**spec.describe(), "loaded": model.model.describe()}
        if judges is not None:
            manifest["judge"] = judges.describe()
            report.judge_calls = judges.generated
            judges.close()
        model.close()
        report.generated = model.generated
        if status == COMPLETE and parallel.world > 1:  # every rank is here: count all ranks' requests
            report.generated = parallel.total(model.generated)
            report.judge_calls = parallel.total(report.judge_calls)
        report.results = _results(manifest, outcomes, status, judges)
        if parallel.primary:
            run_dir.write_results(report.results)
            run_dir.write_manifest({**manifest, "status": status})
        if status == COMPLETE:  # an interrupted rank must not wait on a barrier the others never reach
            parallel.close()
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
              report: RunReport, parallel: DataParallel = DataParallel()) -> dict[str, Any]:
    header = {"task": task.name, "version": task.version, "hash": task.content_hash,
              **({"protocol": task.protocol} if task.protocol else {})}
    if previous and previous.get("status") == NOT_APPLICABLE:
        return previous
    if parallel.world > 1:
        return _run_shard(task, model, judges, run_dir, settings, progress, report, parallel, header)
    if run_dir.shards(task.name):  # a data-parallel run was interrupted: keep what its ranks finished
        try:
            run_dir.merge_shards(task.name, (s.id for s in task.samples(settings.limit)))
        except DataFileError as exc:
            return {**header, "status": ERROR, "reason": str(exc)}
    log = run_dir.samples(task.name)
    done = log.completed()
    try:
        pending = _peekable(s for s in task.samples(settings.limit) if s.id not in done)
        if pending.has_more():
            reason = _inapplicable(task, model)
            if reason:
                return {**header, "status": NOT_APPLICABLE, "reason": reason}
            report.resumed[task.name] = len(done)
            total = task.count() if settings.limit is None else min(task.count(), settings.limit)
            _generate_with_progress(task, model, pending, log, settings, progress, judges, total, len(done))
    except DataFileError as exc:
        return {**header, "status": ERROR, "reason": str(exc), **_summary(task, log, judges)}
    return {**header, "status": COMPLETE, **_summary(task, log, judges)}


def _run_shard(task: Task, model: LazyModel, judges: JudgeEngine | None, run_dir: RunDirectory,
               settings: RunSettings, progress: ProgressSink, report: RunReport, parallel: DataParallel,
               header: dict[str, Any]) -> dict[str, Any]:
    """One rank's share of a task: the samples at positions rank, rank + world, ... not finished by
    any earlier invocation (of any world size), appended to this rank's shard; after every rank is
    done, rank 0 merges the shards into `<task>.jsonl` in the task's sample order and summarises."""
    parallel.barrier()  # every rank reads the logs before any appends to them
    log = run_dir.shard(task.name, parallel.rank, parallel.world)
    outcome: dict[str, Any] = {**header, "status": COMPLETE}
    try:
        done: set[str] = set(run_dir.samples(task.name).completed())
        for shard in run_dir.shards(task.name):
            done.update(shard.completed())
        mine = [0, 0]  # own samples: all, finished
        any_left = False
        for index, sample in enumerate(task.samples(settings.limit)):
            finished = sample.id in done
            any_left = any_left or not finished
            if parallel.mine(index):
                mine[0] += 1
                mine[1] += finished
        pending = _peekable(s for i, s in enumerate(task.samples(settings.limit))
                            if parallel.mine(i) and s.id not in done)
        # rank 0 decides the task's status, so it looks at the model whenever any rank has work
        if pending.has_more() or (parallel.primary and any_left):
            reason = _inapplicable(task, model)
            if reason:
                outcome = {**header, "status": NOT_APPLICABLE, "reason": reason}
            elif pending.has_more():
                report.resumed[task.name] = mine[1]
                _generate_with_progress(task, model, pending, log, settings, progress, judges, mine[0], mine[1])
    except DataFileError as exc:
        outcome = {**header, "status": ERROR, "reason": str(exc)}
    parallel.barrier()  # every shard is durable
    if not parallel.primary or outcome["status"] == NOT_APPLICABLE:
        return outcome
    main = run_dir.samples(task.name)
    try:
        run_dir.merge_shards(task.name, (s.id for s in task.samples(settings.limit)))
    except DataFileError:
        run_dir.merge_shards(task.name, ())
    return {**outcome, **_summary(task, main, judges)}


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


def _generate_with_progress(task: Task, model: LazyModel, pending: Iterable[Sample], log: SampleLog,
                            settings: RunSettings, progress: ProgressSink, judges: JudgeEngine | None,
                            total: int, done: int) -> None:
    progress.start(task.name, total, done)
    try:
        _generate(task, model.get(), pending, log, settings, progress, judges)
    finally:
        log.close()
        progress.finish()


def _generate(task: Task, model: Model, pending: Iterable[Sample], log: SampleLog, settings: RunSettings,
              progress: ProgressSink, judges: JudgeEngine | None) -> None:
    render = _answer_renderer(task, settings, log.path.parent.parent / "media" / task.name)
    finished = _generated(task, model, pending, settings, render)
    if task.judge_scorers:
        assert judges is not None
        finished = judges.score(task.judge_scorers, task.name, finished, task.modalities)
    if settings.repeats > 1:
        finished = _combined_repeats(finished, settings.repeats)
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
    def stem(request: Request) -> str:
        return f"{request.sample_id}_{request.variant}" + (f"_r{request.repeat}" if request.repeat else "")

    sections = task.config.tagged_sections
    return lambda a: Attempt(a.request, render_answer(a.output, generators, media_dir, stem(a.request), sections))


def _breakdown_key(columns: Sequence[str], sample: Sample, attempts: Sequence[Attempt]) -> str:
    def value(column: str) -> str:
        if column == "chosen":
            return str(attempts[0].output.metadata.get("chosen", "?"))
        return str(sample.metadata.get(column, "?"))

    return "+".join(value(c) for c in columns)


def _generated(task: Task, model: Model, pending: Iterable[Sample], settings: RunSettings,
               render: Callable[[Attempt], Attempt]) -> Iterator[tuple[Sample, list[Attempt], dict[str, Score]]]:
    """Samples' repeats as their generations complete, with their rule-based scores (one repeat
    unless `settings.repeats` says more)."""
    generations = settings.generations(task)
    window = max(256, model.batch_size * 16)
    for chunk in _batched(pending, window):
        samples = {s.id: s for s in chunk}
        requests = [dataclasses.replace(r, repeat=k) if k else r
                    for s in chunk for k, generation in enumerate(generations) for r in task.requests(s, generation)]
        expected = defaultdict(int)
        for request in requests:
            expected[request.sample_id, request.repeat] += 1
        requests.sort(key=lambda r: -len(r.prompt_text))  # similar lengths batch together
        attempts: dict[tuple[str, int], list[Attempt]] = defaultdict(list)
        for request, output in model.stream(requests):
            key = request.sample_id, request.repeat
            attempts[key].append(render(Attempt(request, output)))
            if len(attempts[key]) == expected[key]:
                done = sorted(attempts.pop(key), key=lambda a: a.request.variant)
                yield samples[key[0]], done, task.score(samples[key[0]], done)


def _combined_repeats(finished: Iterable[tuple[Sample, list[Attempt], dict[str, Score]]], repeats: int
                      ) -> Iterator[tuple[Sample, list[Attempt], dict[str, Score]]]:
    """Each sample once all its repeats are scored: every repeat's attempts, and scores averaged."""
    waiting: dict[str, list[tuple[int, list[Attempt], dict[str, Score]]]] = defaultdict(list)
    for sample, attempts, scores in finished:
        waiting[sample.id].append((attempts[0].request.repeat, attempts, scores))
        if len(waiting[sample.id]) == repeats:
            done = sorted(waiting.pop(sample.id), key=lambda item: item[0])
            yield sample, [a for _, attempts_r, _ in done for a in attempts_r], combine([s for _, _, s in done])


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
