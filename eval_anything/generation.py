"""One task's generation pipeline: pending samples in windows, their requests (every repeat) to the
model, answers rendered, rule-based then judge scores, repeats combined, and each finished sample
appended to the sample log, committed in batches."""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

from eval_anything.datamodel import Request, Sample, SampleResult, Score
from eval_anything.models import LazyModel, Model
from eval_anything.repeats import combine
from eval_anything.rundir import SampleLog
from eval_anything.scorers import Attempt
from eval_anything.settings import RunSettings
from eval_anything.tasks import Task

if TYPE_CHECKING:
    from eval_anything.judges.engine import JudgeEngine

COMMIT_INTERVAL_S = 1.0
"""Sample logs are fsynced at least this often while samples finish (and after every batch)."""

T = TypeVar("T")
Finished = tuple[Sample, list[Attempt], dict[str, Score]]
"""A sample with its attempts (every variant and repeat) and its scores."""


class ProgressSink(Protocol):
    def start(self, task: str, total: int, done: int) -> None: ...
    def advance(self, count: int = 1) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    def start(self, task: str, total: int, done: int) -> None: ...
    def advance(self, count: int = 1) -> None: ...
    def finish(self) -> None: ...


@dataclass(frozen=True)
class Pipeline:
    """What one task's generation needs."""

    task: Task
    model: LazyModel
    """The evaluated model, loaded when the first sample needs it."""
    settings: RunSettings
    judges: JudgeEngine | None
    """Judges the task's judge scorers; None when it has none."""
    progress: ProgressSink
    check_ranks: Callable[[], None] = lambda: None
    """Called after each logged sample: raises when another data-parallel rank died meanwhile."""


def generate(pipeline: Pipeline, pending: Iterable[Sample], log: SampleLog, total: int, done: int) -> None:
    """Generate, score and log the `pending` samples, `done` of the task's `total` being finished."""
    pipeline.progress.start(pipeline.task.name, total, done)
    try:
        _generate(pipeline, pipeline.model.get(), pending, log)
    finally:
        try:
            log.close()
        finally:
            pipeline.progress.finish()


def _generate(pipeline: Pipeline, model: Model, pending: Iterable[Sample], log: SampleLog) -> None:
    task, settings, judges = pipeline.task, pipeline.settings, pipeline.judges
    render = _answer_renderer(task, settings, log.path.parent.parent / "media" / task.name)
    finished = _generated(task, model, pending, settings, render)
    if task.judge_scorers:
        assert judges is not None
        finished = judges.score(task.judge_scorers, task.name, finished, task.modalities)
    if settings.repeats > 1:
        finished = _combined_repeats(finished, settings.repeats)
    since_commit, last_commit = 0, time.monotonic()
    # closed however the loop ends, so that the backend's stream stops its engine (a continuous-batching
    # manager's thread keeps the process alive at exit) instead of being left suspended
    with _closed_after(finished):
        for sample, attempts, scores in finished:
            record = SampleResult(sample_id=sample.id, requests=tuple(a.request for a in attempts),
                                  outputs=tuple(a.output for a in attempts), scores=scores,
                                  target=sample.target).to_json()
            if task.config.breakdown:
                record["breakdown"] = _breakdown_key(task.config.breakdown, sample, attempts)
            log.append(record)
            pipeline.progress.advance()
            pipeline.check_ranks()
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
               render: Callable[[Attempt], Attempt]) -> Iterator[Finished]:
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
        with _closed_after(model.stream(requests)) as stream:
            for request, output in stream:
                key = request.sample_id, request.repeat
                attempts[key].append(render(Attempt(request, output)))
                if len(attempts[key]) == expected[key]:
                    done = sorted(attempts.pop(key), key=lambda a: a.request.variant)
                    yield samples[key[0]], done, task.score(samples[key[0]], done)


@contextlib.contextmanager
def _closed_after(items: Iterable[T]) -> Iterator[Iterable[T]]:
    """`items` for the block, closed after it when it is a generator: its `finally` clauses (and
    those of the generators it is suspended in) run now, not whenever it is collected."""
    try:
        yield items
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _combined_repeats(finished: Iterable[Finished], repeats: int) -> Iterator[Finished]:
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
