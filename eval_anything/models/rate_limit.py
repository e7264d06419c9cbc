"""Requests in flight to one API endpoint, adapted to its rate limit (AIMD, as TCP's congestion
window): a 429 halves the limit and holds every request back for the server's Retry-After; each
success grows it back by 1 / limit, so by about one per round of requests, up to the configured
concurrency. Once the server has refused one, sends are also paced, as TCP paces a window: one every
latency / limit, so that the requests let go when a pause ends do not reach the server together
(a bucket that admits one at a time would refuse all but the first, and cut the limit again).

Rate limits belong to an API key, not to a request, so the pause is shared: retrying each refused
request on its own schedule (the openai SDK's way, and lm-eval's and lighteval's through tenacity
and litellm) sends the next requests into the same full bucket, and a run at a concurrency above
the limit loses requests once their retries run out. Here a 429 is a failed attempt only when the
request went alone (limit 1): at a higher limit it says "too many at once", which the cut answers.
"""
from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Ticket:
    """One request's permission to be sent."""

    sent_at: float
    """When it was let go, on the limiter's clock."""
    limit: int
    """The limit it was let go under: a 429 under a limit above 1 is the limit's fault, not the request's."""


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
    latency: float | None = None
    """A moving average of successful attempts' durations."""
    paced: bool = False
    """The server has refused a request: sends are spaced latency / limit apart from then on."""
    next_send: float = -math.inf

    def __post_init__(self) -> None:
        self.limit = float(self.ceiling)

    @property
    def allowed(self) -> int:
        return max(1, math.floor(self.limit))

    def wait(self, now: float) -> float | None:
        """0 when a request may go now; seconds until the pause ends; None while the limit is full."""
        if self.in_flight >= self.allowed:
            return None if now >= self.resume_at else self.resume_at - now
        not_before = max(self.resume_at, self.next_send)
        return 0.0 if now >= not_before else not_before - now

    def start(self, now: float) -> Ticket:
        self.in_flight += 1
        if self.paced and self.latency is not None:
            self.next_send = now + self.latency / self.allowed
        return Ticket(now, self.allowed)

    def succeeded(self, ticket: Ticket, now: float) -> None:
        self.in_flight -= 1
        self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)
        took = now - ticket.sent_at
        self.latency = took if self.latency is None else 0.8 * self.latency + 0.2 * took

    def failed(self) -> None:
        """An attempt that failed otherwise (5xx, a timeout): the rate is not what failed."""
        self.in_flight -= 1

    def rate_limited(self, ticket: Ticket, now: float, retry_after: float | None) -> None:
        self.in_flight -= 1
        self.paced = True
        if ticket.sent_at >= self.cut_at:  # one cut per round: those sent before it saw the old limit
            self.limit = max(1.0, self.limit / 2)
            self.cut_at = now
        if retry_after is not None and retry_after >= 0:
            self.resume_at = max(self.resume_at, now + min(retry_after, self.max_pause))


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

    async def _update(self, change: Callable[[], None]) -> None:
        async with self._changed:
            change()
            self._changed.notify_all()
