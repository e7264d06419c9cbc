"""Runs judge scorers: queries go to the judge model through its backend's `stream` (bounded
concurrency, the backend's retries), answers are cached, malformed replies are re-asked a bounded
number of times, and every failure ends as a recorded error, never a silent score."""
from __future__ import annotations

import itertools
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from eval_anything.datamodel import GenerationConfig, Modality, ModelOutput, Part, Request, Sample, Score
from eval_anything.judges.base import JudgeQuery, JudgeScorer, NotApplicable, Verdict
from eval_anything.judges.cache import JudgeCache, cache_key, media_key
from eval_anything.judges.parsers import JudgeParseError
from eval_anything.models import LazyModel, ModelSpec
from eval_anything.scorers.base import Attempt

WEAK_JUDGE_WARNING = ("eval-anything: warning: no --judge given, so the embedded SmolLM2-135M judges; it is a weak "
                      "judge, and its scores are labelled as such")


@dataclass(frozen=True)
class JudgeSettings:
    spec: ModelSpec
    weak_default: bool = False
    """The embedded model judges because the user named no judge."""
    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int = 1234
    parse_retries: int = 2
    """How many times a malformed reply is asked again before it is recorded as a judge error."""
    price_per_million: tuple[float, float] | None = None
    """USD per million input and output tokens, for the cost line of the results."""
    cache_path: Path | None = None

    def identity(self) -> dict[str, Any]:
        """What judged scores depend on (part of the run id and of cache keys): the judge model by
        backend and name, not by where it is served, and how it is sampled."""
        return {"judge": {"backend": self.spec.backend, "reference": self.spec.reference},
                "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "parse_retries": self.parse_retries}


@dataclass
class _Query:
    """A query being answered: its replies so far and where it stands."""

    owner: "_OpenSample"
    scorer: str
    rubric_hash: str
    query: JudgeQuery
    attempt: int = 0
    raws: list[str] = field(default_factory=list)
    calls: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    media_dropped: tuple[str, ...] = ()
    verdict: Verdict | None = None

    def record(self, text: str, input_tokens: int, output_tokens: int, cached: bool) -> None:
        self.raws.append(text)
        self.cached += cached
        self.calls += not cached
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens

    def settle(self, value: Any = None, error: str | None = None) -> None:
        self.verdict = Verdict(self.query.label, value, tuple(self.raws), error, self.calls, self.cached,
                               self.input_tokens, self.output_tokens, self.media_dropped)
        self.owner.outstanding -= 1
        if self.owner.outstanding == 0:
            self.owner.ready.append(self.owner)


@dataclass
class _OpenSample:
    sample: Sample
    attempts: list[Attempt]
    scores: dict[str, Score]
    ready: deque["_OpenSample"]
    """Where this sample goes once its last query settles."""
    queries: dict[str, list[_Query]] = field(default_factory=dict)
    outstanding: int = 0


class JudgeEngine:
    def __init__(self, settings: JudgeSettings) -> None:
        self.settings = settings
        self.model = LazyModel(settings.spec)
        self.cache = JudgeCache(settings.cache_path) if settings.cache_path else None
        self._identity = settings.identity()
        self._inflight: dict[int, tuple[Request, _Query, str]] = {}
        self._sharing: dict[str, list[_Query]] = {}
        """Cache key of a request in flight -> the other queries asking exactly the same (e.g. the
        repeats of a greedy sample): one call answers them all."""
        self._warned = False
        self._loaded: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        if self.model.model is not None and self._loaded is None:
            self._loaded = self.model.model.describe()
        return {**self.settings.spec.describe(), "weak_default": self.settings.weak_default,
                **({"loaded": self._loaded} if self._loaded else {})}

    def close(self) -> None:
        self.describe()  # keep what was loaded, for results written after closing
        self.model.close()
        if self.cache is not None:
            self.cache.close()

    def score(self, judges: list[JudgeScorer], task_name: str,
              finished: Iterable[tuple[Sample, list[Attempt], dict[str, Score]]]
              ) -> Iterator[tuple[Sample, list[Attempt], dict[str, Score]]]:
        """Add each judge scorer's score to samples as their verdicts arrive, in completion order."""
        ready: deque[_OpenSample] = deque()
        retries: list[_Query] = []

        def first_round() -> Iterator[Request]:
            for sample, attempts, scores in finished:
                entry = self._open(judges, sample, attempts, scores, ready)
                if entry.outstanding == 0:
                    ready.append(entry)
                for query in [q for qs in entry.queries.values() for q in qs]:
                    yield from self._ask(task_name, query, retries)

        round_requests: Iterable[Request] = first_round()
        while True:
            for request, output in self._stream(round_requests):
                self._receive(request, output, retries)
                yield from self._drain(judges, ready)
            yield from self._drain(judges, ready)
            if not retries:
                return
            again, retries = retries, []
            round_requests = (r for q in again for r in self._ask(task_name, q, retries))

    def _open(self, judges: list[JudgeScorer], sample: Sample, attempts: list[Attempt],
              scores: dict[str, Score], ready: deque[_OpenSample]) -> _OpenSample:
        entry = _OpenSample(sample, attempts, scores, ready)
        generation_failed = next((a.output.error for a in attempts if a.output.error), None)
        for judge in judges:
            if generation_failed:
                scores[judge.name] = Score.errored(f"generation failed: {generation_failed}")
                continue
            try:
                queries = judge.queries(sample, attempts)
            except NotApplicable as exc:
                scores[judge.name] = Score.inapplicable(str(exc))
                continue
            except Exception as exc:  # bad item data for this judge: that sample's score errors, the run goes on
                scores[judge.name] = Score.errored(f"{judge.name} could not ask the judge: {exc}")
                continue
            entry.queries[judge.name] = [_Query(entry, judge.name, judge.rubric.hash, q) for q in queries]
            entry.outstanding += len(queries)
        return entry

    def _ask(self, task_name: str, query: _Query, retries: list[_Query]) -> Iterator[Request]:
        """Answer locally or from the cache while it can; otherwise yield the request to send."""
        if query.query.local is not None:
            try:
                query.settle(value=query.query.local())
            except Exception as exc:  # one sample's local scorer failing is that sample's error
                query.settle(error=f"{type(exc).__name__}: {exc}")
            return
        while query.verdict is None:
            request = self._request(task_name, query)
            key = self._key(query, request)
            hit = self.cache.get(key) if self.cache else None
            if hit is None and key in self._sharing:  # the same question is on its way: share its reply
                self._sharing[key].append(query)
                return
            if hit is None:
                self._inflight[id(request)] = (request, query, key)
                self._sharing[key] = []
                yield request
                return
            query.record(*hit, cached=True)
            self._judge_reply(query, hit[0], retries, inline=True)

    def _request(self, task_name: str, query: _Query) -> Request:
        model = self.model.get()
        kept = tuple(p for p in query.query.media if p.modality in model.input_modalities)
        query.media_dropped = tuple(sorted({p.modality.value for p in query.query.media} -
                                           {p.modality.value for p in kept}))
        generation = GenerationConfig(max_new_tokens=self.settings.max_new_tokens,
                                      temperature=self.settings.temperature, seed=self.settings.seed + query.attempt)
        return Request(task=task_name, sample_id=query.owner.sample.id, variant=query.attempt,
                       parts=kept + (Part.of_text(query.query.text),), generation=generation,
                       system=query.query.system)

    def _key(self, query: _Query, request: Request) -> str:
        media = [media_key(p) for p in request.parts if p.modality is not Modality.TEXT]
        sampling = {"max_new_tokens": request.generation.max_new_tokens, "temperature": request.generation.temperature,
                    "seed": request.generation.seed, "system": request.system}
        return cache_key(self._identity["judge"], query.rubric_hash, query.query.text, media, sampling, query.attempt)

    def _receive(self, request: Request, output: ModelOutput, retries: list[_Query]) -> None:
        _, query, key = self._inflight.pop(id(request))
        sharing = self._sharing.pop(key)
        if output.error:
            for asker in (query, *sharing):
                asker.raws.append("")
                asker.calls += asker is query
                asker.settle(error=f"judge call failed: {output.error}")
            return
        if self.cache is not None:
            self.cache.put(key, self.settings.spec.label, output.text, output.usage.input_tokens,
                           output.usage.output_tokens)
        for asker in (query, *sharing):  # those sharing the reply count it as cached, not as a call
            asker.record(output.text, output.usage.input_tokens, output.usage.output_tokens, cached=asker is not query)
            self._judge_reply(asker, output.text, retries, inline=False)

    def _judge_reply(self, query: _Query, text: str, retries: list[_Query], inline: bool) -> None:
        try:
            query.settle(value=query.query.parse(text))
        except JudgeParseError as exc:
            if query.attempt >= self.settings.parse_retries:
                query.settle(error=f"unparseable after {query.attempt + 1} replies: {exc}")
                return
            query.attempt += 1
            if not inline:
                retries.append(query)

    def _stream(self, requests: Iterable[Request]) -> Iterator[tuple[Request, ModelOutput]]:
        """The judge model's stream, loading the model only if some request is not cached."""
        iterator = iter(requests)
        first = list(itertools.islice(iterator, 1))
        if not first:
            return
        if self.settings.weak_default and not self._warned:
            print(WEAK_JUDGE_WARNING, file=sys.stderr)
            self._warned = True
        yield from self.model.get().stream(itertools.chain(first, iterator))

    def _drain(self, judges: list[JudgeScorer], ready: deque[_OpenSample]
               ) -> Iterator[tuple[Sample, list[Attempt], dict[str, Score]]]:
        while ready:
            entry = ready.popleft()
            for judge in judges:
                if judge.name in entry.queries:
                    verdicts = [q.verdict for q in entry.queries[judge.name]]
                    entry.scores[judge.name] = judge.finish(entry.sample, entry.attempts, verdicts)
            yield entry.sample, entry.attempts, entry.scores
