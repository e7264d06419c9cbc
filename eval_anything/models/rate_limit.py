"""Requests in flight to one API endpoint, adapted to its rate limit (AIMD, as TCP's congestion
window): a 429 halves the limit and holds every request back for the server's Retry-After; each
success grows it back by 1 / limit, so by about one per round of requests, up to the configured
concurrency. Once the server has refused one, sends are also paced, as TCP paces a window, at the
rate the server has been admitting (successes a second over the last `RATE_WINDOW`, as TCP BBR and
Vegas estimate a path's bandwidth) times `PROBE_GAIN` (`SEARCH_GAIN` while none is refused), so
that the requests let go when a pause ends do not reach the server together (a bucket that admits
one at a time would refuse all but the first). The halving then stops at the requests that rate
keeps in flight (rate x latency, plus one): below that, the limit, not the server, would cap the rate.

Rate limits belong to an API key, not to a request, so the pause is shared: retrying each refused
request on its own schedule (the openai SDK's way, and lm-eval's and lighteval's through tenacity
and litellm) sends the next requests into the same full bucket, and a run at a concurrency above
the limit loses requests once their retries run out. Here a 429 is not a failed attempt: the cut
and the pause answer it, and the request goes again when the server said. Only once the server has
admitted nothing for `patience` seconds do its 429s count against a request's retries (down, not
busy).
"""
from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

RATE_WINDOW = 10
"""Successes the admitted rate is measured over: few, so that it follows a rate that has just grown."""
PROBE_GAIN = 1.1
"""Sends go this much faster than the admitted rate, to find out whether the server admits more: a
request sent early costs one 429, whose Retry-After says when the next is admitted."""
SEARCH_GAIN, SEARCH_AFTER = 1.5, 5
"""The gain once `SEARCH_AFTER` successes came back with no 429 among them: the admitted rate is then
the pacing's own, below the server's, so it is searched for faster."""
CATCH_UP = 0.5
"""A paced send let go late (the event loop was busy) by up to this share of the interval moves the
next one up by as much: without it the lateness adds up and the rate falls below the server's. Later
than that, the sender was idle, and the next send is a whole interval away."""


@dataclass(frozen=True)
class Ticket:
    """One request's permission to be sent."""

    sent_at: float
    """When it was let go, on the limiter's clock."""
    limit: int
    """The limit it was let go under."""


@dataclass
class AdaptiveConcurrency:
    """The AIMD state, on a clock given at each call (no I/O: tested on a fake clock)."""

    ceiling: int
    """The configured concurrency: the limit never grows past it."""
    limit: float = field(init=False)
    in_flight: int = 0
    resume_at: float = -math.inf
    """No request is let go before this (the latest Retry-After)."""
    cut_at: float = -math.inf
    """When the limit was last halved: 429s of requests sent before then do not halve it again."""
    max_pause: float = 60.0
    """A Retry-After beyond this is taken as this (the openai SDK's bound)."""
    patience: float = 60.0
    """A server that has admitted nothing for this long is down, not busy: its 429s count as failures."""
    admitted_at: float | None = None
    """When a request was last admitted (the first send, before any was)."""
    latency: float | None = None
    """A moving average of successful attempts' durations."""
    paced: bool = False
    """The server has refused a request: sends are paced from then on."""
    next_send: float = -math.inf
    refused_at: float = -math.inf
    """When the latest 429 came back."""
    finished: deque[float] = field(default_factory=lambda: deque(maxlen=RATE_WINDOW))
    """When the latest successes came back."""

    def __post_init__(self) -> None:
        self.limit = float(self.ceiling)

    @property
    def allowed(self) -> int:
        return max(1, math.floor(self.limit))

    def admitted_rate(self) -> float | None:
        """Successes a second over the latest `RATE_WINDOW`; None before there are a few."""
        if len(self.finished) < 4 or self.finished[-1] <= self.finished[0]:
            return None
        return (len(self.finished) - 1) / (self.finished[-1] - self.finished[0])

    def interval(self) -> float | None:
        """Seconds between paced sends: the admitted rate's, a little faster (much faster when none
        was refused lately); latency / limit while that rate is unknown."""
        rate = self.admitted_rate()
        if rate is not None:
            # no 429 over the latest successes: the rate measured is the pacing's own, not the server's
            refused = self.refused_at >= self.finished[-min(len(self.finished), SEARCH_AFTER)]
            return 1 / ((PROBE_GAIN if refused else SEARCH_GAIN) * rate)
        return None if self.latency is None else self.latency / self.allowed

    def wait(self, now: float) -> float | None:
        """0 when a request may go now; seconds until the pause ends; None while the limit is full."""
        if self.in_flight >= self.allowed:
            return None if now >= self.resume_at else self.resume_at - now
        not_before = max(self.resume_at, self.next_send)
        return 0.0 if now >= not_before else not_before - now

    def start(self, now: float) -> Ticket:
        self.in_flight += 1
        if self.admitted_at is None:
            self.admitted_at = now
        interval = self.interval() if self.paced else None
        if interval is not None:  # from when this one was due: a wake-up a little late is not lost to the rate
            due = self.next_send if now - self.next_send <= CATCH_UP * interval else now
            self.next_send = due + interval
        return Ticket(now, self.allowed)

    def succeeded(self, ticket: Ticket, now: float) -> None:
        self.in_flight -= 1
        self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)
        took = now - ticket.sent_at
        self.latency = took if self.latency is None else 0.8 * self.latency + 0.2 * took
        self.finished.append(now)
        self.admitted_at = now

    def failed(self) -> None:
        """An attempt that failed otherwise (5xx, a timeout): the rate is not what failed."""
        self.in_flight -= 1

    def rate_limited(self, ticket: Ticket, now: float, retry_after: float | None) -> None:
        self.in_flight -= 1
        self.paced = True
        self.refused_at = now
        if ticket.sent_at >= self.cut_at:  # one cut per round: those sent before it saw the old limit
            self.limit = max(self.floor(), self.limit / 2)
            self.cut_at = now
        if retry_after is not None and retry_after >= 0:
            self.resume_at = max(self.resume_at, now + min(retry_after, self.max_pause))
            self.next_send = self.resume_at  # the refused send's turn, when the server said to send it

    def starved(self, now: float) -> bool:
        """Whether nothing has been admitted for `patience` seconds."""
        return self.admitted_at is not None and now - self.admitted_at > self.patience

    def floor(self) -> float:
        """The lowest limit a 429 cuts to: what the paced rate keeps in flight, and one more."""
        rate = self.admitted_rate()
        if rate is None or self.latency is None:
            return 1.0
        return min(float(self.ceiling), max(1.0, math.ceil(PROBE_GAIN * rate * self.latency) + 1))


class AdaptiveLimiter:
    """`AdaptiveConcurrency` for coroutines on one event loop. A request refused before goes ahead
    of new ones when a slot opens, so that no request is refused again and again."""

    def __init__(self, concurrency: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.state = AdaptiveConcurrency(concurrency)
        self._clock = clock
        self._changed = asyncio.Condition()
        self._retrying = 0

    async def acquire(self, retrying: bool = False) -> Ticket:
        async with self._changed:
            self._retrying += retrying
            try:
                while True:
                    wait = self.state.wait(self._clock())
                    if wait == 0 and (retrying or self._retrying == 0):
                        ticket = self.state.start(self._clock())
                        self._changed.notify_all()  # a slot may be left for the next in line
                        return ticket
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), wait or None)
            finally:
                self._retrying -= retrying

    async def succeeded(self, ticket: Ticket) -> None:
        await self._update(lambda: self.state.succeeded(ticket, self._clock()))

    async def failed(self) -> None:
        await self._update(self.state.failed)

    async def rate_limited(self, ticket: Ticket, retry_after: float | None) -> None:
        await self._update(lambda: self.state.rate_limited(ticket, self._clock(), retry_after))

    def starved(self) -> bool:
        return self.state.starved(self._clock())

    async def _update(self, change: Callable[[], None]) -> None:
        async with self._changed:
            change()
            self._changed.notify_all()
