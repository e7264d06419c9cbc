"""Runs judge scorers: queries go to the judge model through its backend's `stream` (bounded
concurrency, the backend's retries), answers are cached, malformed replies are re-asked a bounded
number of times, and every failure ends as a recorded error, never a silent score."""
from __future__ import annotations

import itertools
import json
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from eval_anything.datamodel import GenerationConfig, Modality, ModelOutput, Part, Request, Sample, Score
from eval_anything.judges.base import JudgeQuery, JudgeScorer, NotApplicable, Verdict
from eval_anything.judges.cache import JudgeCache, cache_key, media_key
from eval_anything.judges.parsers import JudgeParseError
from eval_anything.models import LazyModel, ModelSpec
from eval_anything.scorers.base import Attempt
from eval_anything.settings import DEFAULT_ROUTE, MEDIA_ROUTES, JudgeSettings, judge_identity

WEAK_JUDGE_WARNING = ("eval-anything: warning: no --judge given, so the embedded SmolLM2-135M judges; it is a weak "
                      "judge, and its scores are labelled as such")

GROUP_WINDOW = 256
"""With several judges, requests are taken this many at a time and each judge's share streamed in turn."""


class JudgeSetupError(ValueError):
    """The judges named cannot judge a task as its scorers require (a strict scorer's media that
    its judge cannot take): raised before any judge call."""


def _spec_key(spec: ModelSpec) -> str:
    """Specs that load the same model share one instance."""
    return json.dumps([spec.backend, spec.reference, dict(spec.args)], sort_keys=True, default=str)


@dataclass
class _Query:
    """A query being answered: its replies so far and where it stands."""

    owner: "_OpenSample"
    scorer: str
    rubric_hash: str
    query: JudgeQuery
    route: str = DEFAULT_ROUTE
    """Which judge answers it (JudgeSettings.route)."""
    strict: bool = False
    """Its scorer has strict_media: media the judge cannot take are an error, not dropped."""
    attempt: int = 0
    raws: list[str] = field(default_factory=list)
    calls: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    media_dropped: tuple[str, ...] = ()
    seeds: list[int] = field(default_factory=list)
    """The sampling seed of each request made for this query, in order."""
    verdict: Verdict | None = None

    def record(self, text: str, input_tokens: int, output_tokens: int, cached: bool) -> None:
        self.raws.append(text)
        self.cached += cached
        self.calls += not cached
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens

    def settle(self, value: Any = None, error: str | None = None, asked: dict[str, Any] | None = None) -> None:
        self.verdict = Verdict(self.query.label, value, tuple(self.raws), error, self.calls, self.cached,
                               self.input_tokens, self.output_tokens, self.media_dropped, asked or {})
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
        """The default judge."""
        by_spec = {_spec_key(settings.spec): self.model}
        self.models: dict[str, LazyModel] = {DEFAULT_ROUTE: self.model}
        """Each route's judge; routes naming the same spec share one (loaded on first need)."""
        for route, spec in settings.routes.items():
            self.models[route] = by_spec.setdefault(_spec_key(spec), LazyModel(spec))
        self.cache = JudgeCache(settings.cache_path) if settings.cache_path else None
        self._inflight: dict[int, tuple[Request, _Query, str]] = {}
        self._sharing: dict[str, list[_Query]] = {}
        """Cache key of a request in flight -> the other queries asking exactly the same (e.g. the
        repeats of a greedy sample): one call answers them all."""
        self._warned = False
        self._unfit: dict[str, dict[Modality, str]] = {}
        """Strict scorers of the task being judged -> media the unchosen default judge cannot take, and why."""
        self._loaded: dict[int, dict[str, Any]] = {}

    @property
    def generated(self) -> int:
        """Requests the judge models answered in this invocation (cache hits excluded), all judges."""
        return sum(m.generated for m in self._distinct())

    def _distinct(self) -> list[LazyModel]:
        return list({id(m): m for m in self.models.values()}.values())

    def _described(self, model: LazyModel) -> dict[str, Any]:
        if model.model is not None and id(model) not in self._loaded:
            self._loaded[id(model)] = model.model.describe()
        loaded = self._loaded.get(id(model))
        return {**model.spec.describe(), **({"loaded": loaded} if loaded else {})}

    def describe(self) -> dict[str, Any]:
        """The default judge, and with overrides every other judge by its route."""
        default = self._described(self.model)
        described = {**self.settings.spec.describe(), "weak_default": self.settings.weak_default,
                     **({"loaded": default["loaded"]} if "loaded" in default else {})}
        if self.settings.routes:
            described["routes"] = {route: self._described(self.models[route]) for route in sorted(self.settings.routes)}
        return described

    def close(self) -> None:
        self.describe()  # keep what was loaded, for results written after closing
        for model in self._distinct():
            model.close()
        if self.cache is not None:
            self.cache.close()

    def check_media(self, judges: list[JudgeScorer], task_name: str, inputs: Iterable[Modality] = ()) -> None:
        """Raise JudgeSetupError when a strict_media scorer declares a modality (judge_modalities)
        that the judge its queries with that modality go to cannot take. Loads the judges concerned
        (an hf judge's modalities are its processor's); a loaded judge is reused. A query carrying
        several media at once goes to one judge (MEDIA_ROUTES), which may lack one of them: that
        query is a judge error when asked (`_ask`), never judged on part of its media."""
        inputs = frozenset(inputs)
        self._unfit = {}
        for judge in judges:
            if not judge.strict_media:
                continue
            for modality in sorted(set(judge.judge_modalities(inputs)) - {Modality.TEXT}, key=MEDIA_ROUTES.index):
                route = self.settings.route(task_name, (modality,))
                model = self.models[route].get()
                if modality in model.input_modalities:
                    continue
                message = _media_message(task_name, judge.name, route, modality, model)
                if self.settings.weak_default and route == DEFAULT_ROUTE:
                    # nobody chose this judge: the scores it cannot give are not applicable, the run goes on
                    self._unfit.setdefault(judge.name, {})[modality] = message
                    continue
                raise JudgeSetupError(message)

    def score(self, judges: list[JudgeScorer], task_name: str,
              finished: Iterable[tuple[Sample, list[Attempt], dict[str, Score]]],
              input_modalities: Iterable[Modality] = ()
              ) -> Iterator[tuple[Sample, list[Attempt], dict[str, Score]]]:
        """Add each judge scorer's score to samples as their verdicts arrive, in completion order.
        `input_modalities` (the task's) tell which media a strict scorer's queries may carry; the
        judges are checked for them (check_media) before the first sample is taken."""
        ready: deque[_OpenSample] = deque()
        retries: list[_Query] = []
        for judge in judges:
            try:
                judge.bind_judging(self.settings)
            except ValueError as exc:  # the run stops here, before any judge call, its samples kept
                raise JudgeSetupError(f"task {task_name}, scorer {judge.name}: {exc}") from None
        self.check_media(judges, task_name, input_modalities)
        single = self._single_judge(task_name)

        def first_round() -> Iterator[Request]:
            for sample, attempts, scores in finished:
                entry = self._open(judges, task_name, sample, attempts, scores, ready)
                if entry.outstanding == 0:
                    ready.append(entry)
                for query in [q for qs in entry.queries.values() for q in qs]:
                    yield from self._ask(task_name, query, retries)

        round_requests: Iterable[Request] = first_round()
        while True:
            for request, output in self._stream(round_requests, single):
                self._receive(request, output, retries)
                yield from self._drain(judges, ready)
            yield from self._drain(judges, ready)
            if not retries:
                return
            again, retries = retries, []
            round_requests = (r for q in again for r in self._ask(task_name, q, retries))

    def _single_judge(self, task_name: str) -> LazyModel | None:
        """The one judge every query of the task goes to, or None when their media choose among several."""
        carried = (c for size in range(len(MEDIA_ROUTES) + 1) for c in itertools.combinations(MEDIA_ROUTES, size))
        reachable = {id(m): m for m in (self.models[self.settings.route(task_name, c)] for c in carried)}
        return next(iter(reachable.values())) if len(reachable) == 1 else None

    def _open(self, judges: list[JudgeScorer], task_name: str, sample: Sample, attempts: list[Attempt],
              scores: dict[str, Score], ready: deque[_OpenSample]) -> _OpenSample:
        entry = _OpenSample(sample, attempts, scores, ready)
        generation_failed = next((a.output.error for a in attempts if a.output.error), None)
        for judge in judges:
            if generation_failed:
                scores[judge.name] = Score.errored(f"generation failed: {generation_failed}")
                continue
            try:
                queries = judge.prepared(sample, judge.queries(sample, attempts))
                _refuse_unfit(queries, self._unfit.get(judge.name, {}))
            except NotApplicable as exc:
                scores[judge.name] = Score.inapplicable(str(exc))
                continue
            except Exception as exc:  # bad item data for this judge: that sample's score errors, the run goes on
                scores[judge.name] = Score.errored(f"{judge.name} could not ask the judge: {exc}")
                continue
            strict = judge.strict_media
            entry.queries[judge.name] = [
                _Query(entry, judge.name, judge.rubric_hash, q,
                       route=self.settings.route(task_name, (p.modality for p in q.media)), strict=strict)
                for q in queries]
            entry.outstanding += len(queries)
        return entry

    def _ask(self, task_name: str, query: _Query, retries: list[_Query]) -> Iterator[Request]:
        """Answer locally or from the cache while it can; otherwise yield the request to send."""
        if query.query.local is not None:
            asked = {"local": True, "user": query.query.text, "media": [media_key(p) for p in query.query.media]}
            try:
                query.settle(value=query.query.local(), asked=asked)
            except Exception as exc:  # one sample's local scorer failing is that sample's error
                query.settle(error=f"{type(exc).__name__}: {exc}", asked=asked)
            return
        while query.verdict is None:
            request = self._request(task_name, query)
            if query.strict and query.media_dropped:  # undeclared media (check_media passed): never dropped silently
                query.settle(error=f"strict_media: the judge {self.models[query.route].spec.label} cannot take "
                                   f"{', '.join(query.media_dropped)}", asked=self._asked(query))
                return
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
        model = self.models[query.route].get()
        kept = tuple(p for p in query.query.media if p.modality in model.input_modalities)
        query.media_dropped = tuple(sorted({p.modality.value for p in query.query.media} -
                                           {p.modality.value for p in kept}))
        generation = GenerationConfig(max_new_tokens=self.settings.max_new_tokens, temperature=self._temperature(query),
                                      seed=self.settings.seed + query.attempt)
        query.seeds.append(generation.seed)
        return Request(task=task_name, sample_id=query.owner.sample.id, variant=query.attempt,
                       parts=(Part.of_text(query.query.text), *kept) if query.query.media_after_text
                       else (*kept, Part.of_text(query.query.text)), generation=generation,
                       system=query.query.system)

    def _key(self, query: _Query, request: Request) -> str:
        media = [media_key(p) for p in request.parts if p.modality is not Modality.TEXT]
        sampling = {"max_new_tokens": request.generation.max_new_tokens, "temperature": request.generation.temperature,
                    "seed": request.generation.seed, "system": request.system,
                    **({"media_after_text": True} if query.query.media_after_text else {})}
        judge = judge_identity(self.models[query.route].spec)  # the judge that answers it
        return cache_key(judge, query.rubric_hash, query.query.text, media, sampling, query.attempt)

    def _receive(self, request: Request, output: ModelOutput, retries: list[_Query]) -> None:
        _, query, key = self._inflight.pop(id(request))
        sharing = self._sharing.pop(key)
        if output.error:
            for asker in (query, *sharing):
                asker.raws.append("")
                asker.calls += asker is query
                asker.settle(error=f"judge call failed: {output.error}", asked=self._asked(asker))
            return
        if self.cache is not None:
            self.cache.put(key, self.models[query.route].spec.label, output.text, output.usage.input_tokens,
                           output.usage.output_tokens)
        for asker in (query, *sharing):  # those sharing the reply count it as cached, not as a call
            asker.record(output.text, output.usage.input_tokens, output.usage.output_tokens, cached=asker is not query)
            self._judge_reply(asker, output.text, retries, inline=False)

    def _judge_reply(self, query: _Query, text: str, retries: list[_Query], inline: bool) -> None:
        try:
            query.settle(value=query.query.parse(text), asked=self._asked(query))
        except JudgeParseError as exc:
            if query.attempt >= self.settings.parse_retries:
                query.settle(error=f"unparseable after {query.attempt + 1} replies: {exc}", asked=self._asked(query))
                return
            query.attempt += 1
            if not inline:
                retries.append(query)

    def _temperature(self, query: _Query) -> float:
        """The scorer's temperature for this query where it sets one, else the run's judge setting."""
        return self.settings.temperature if query.query.temperature is None else query.query.temperature

    def _asked(self, query: _Query) -> dict[str, Any]:
        """The audit of a judged query: the messages as sent, its media by content hash, the sampling."""
        sent = [p for p in query.query.media if p.modality.value not in query.media_dropped]
        asked = {"system": query.query.system, "user": query.query.text, "media": [media_key(p) for p in sent],
                 "temperature": self._temperature(query), "max_new_tokens": self.settings.max_new_tokens,
                 "seeds": list(query.seeds)}
        if self.settings.routes:  # which judge answered, where there are several
            asked["judge"] = {"route": query.route, **judge_identity(self.models[query.route].spec)}
        return asked

    def _stream(self, requests: Iterable[Request], single: LazyModel | None) -> Iterator[tuple[Request, ModelOutput]]:
        """The judge's stream, loading a judge only if some request for it is not cached. With
        several judges: GROUP_WINDOW requests at a time, each judge's share of them streamed in turn."""
        iterator = iter(requests)
        if single is not None:
            first = list(itertools.islice(iterator, 1))
            if first:
                yield from self._stream_to(single, itertools.chain(first, iterator))
            return
        while window := list(itertools.islice(iterator, GROUP_WINDOW)):
            groups: dict[int, tuple[LazyModel, list[Request]]] = {}
            for request in window:
                model = self.models[self._inflight[id(request)][1].route]
                groups.setdefault(id(model), (model, []))[1].append(request)
            for model, group in groups.values():
                yield from self._stream_to(model, group)

    def _stream_to(self, model: LazyModel, requests: Iterable[Request]) -> Iterator[tuple[Request, ModelOutput]]:
        if model is self.model and self.settings.weak_default and not self._warned:
            print(WEAK_JUDGE_WARNING, file=sys.stderr)
            self._warned = True
        yield from model.get().stream(requests)

    def _drain(self, judges: list[JudgeScorer], ready: deque[_OpenSample]
               ) -> Iterator[tuple[Sample, list[Attempt], dict[str, Score]]]:
        while ready:
            entry = ready.popleft()
            for judge in judges:
                if judge.name in entry.queries:
                    verdicts = [q.verdict for q in entry.queries[judge.name]]
                    entry.scores[judge.name] = judge.finish(entry.sample, entry.attempts, verdicts)
            yield entry.sample, entry.attempts, entry.scores


def _refuse_unfit(queries: Iterable[JudgeQuery], unfit: dict[Modality, str]) -> None:
    """NotApplicable, with the reason, for a sample whose queries carry media the judge cannot take."""
    carried = {p.modality for q in queries if q.local is None for p in q.media}
    for modality, message in unfit.items():
        if modality in carried:
            raise NotApplicable(message)


def _media_message(task: str, scorer: str, route: str, modality: Modality, model: Any) -> str:
    which = f"the {route} judge" if route != DEFAULT_ROUTE else "the default judge"
    takes = ", ".join(sorted(m.value for m in model.input_modalities))
    key = route if route != DEFAULT_ROUTE else modality.value
    return (f"task {task}: scorer {scorer} (strict_media) sends {modality.value} to {which} {model.spec.label}, "
            f"which cannot take {modality.value} (it takes {takes}); name a judge that takes {modality.value} with "
            f"--judge {key}=[BACKEND:]REF")
