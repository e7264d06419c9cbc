"""The ranks of a data-parallel run meeting through the launcher's key-value store (torch's
TCPStore, found from MASTER_ADDR/MASTER_PORT as `init_process_group` finds it), with heartbeats
that tell a slow rank from a dead one.

A barrier is "poll until every rank has arrived": ranks' shares of a task take unequal times, so a
rank may wait long for another that is alive. Each rank bumps its own heartbeat counter from a
daemon thread; a waiting rank watches the counters of the ranks not yet arrived, on its own clock
(hosts' clocks may disagree), and raises `RankLostError` naming a rank whose counter stood still for
the rank timeout. gloo's `monitored_barrier` names absent ranks too, but a timeout there cannot tell
slow from dead, and the group is unusable after one.
"""
from __future__ import annotations

import functools
import itertools
import json
import os
import socket
import threading
import time
from datetime import timedelta
from typing import Any, Callable, Sequence, TypeVar

from eval_anything.errors import UsageError
from eval_anything.models.base import BackendError

RANK_TIMEOUT_ENV = "EVAL_ANYTHING_RANK_TIMEOUT_S"
DEFAULT_RANK_TIMEOUT_S = 120.0
JOIN_TIMEOUT_S = 600.0
"""How long rank 0 waits for every rank to connect at start-up: a node's share of a job may start late."""
POLL_S = 0.02
"""How often a waiting rank looks whether the others have arrived (one store request)."""
PREFIX = "eval_anything"

T = TypeVar("T")
_WAITS = {"arrived": "the barrier before or after a task", "count": "the run's request counts"}


class RankLostError(BackendError):
    """Another rank stopped sending heartbeats (killed, crashed, its host lost), or the store that
    the ranks meet at is gone: the run stops; every rank's finished samples are in its shard, so a
    rerun of the same launch (any world size) resumes."""


def rank_timeout_default() -> float:
    """$EVAL_ANYTHING_RANK_TIMEOUT_S, else 120 s."""
    value = os.environ.get(RANK_TIMEOUT_ENV)
    try:
        return float(value) if value else DEFAULT_RANK_TIMEOUT_S
    except ValueError:
        raise UsageError(f"{RANK_TIMEOUT_ENV}={value!r}: give the seconds as a number, e.g. 120") from None


def heartbeat_interval(timeout: float) -> float:
    """Five beats per timeout, at most one every 5 s: a missed beat or two is never taken for death."""
    return min(timeout / 5, 5.0)


class _Heartbeat:
    """A daemon thread bumping this rank's counter on its own connection to the store, and after each
    beat calling `watch(store)` with that connection (it watches the other ranks)."""

    def __init__(self, store: Any, key: str, interval: float, watch: Callable[[Any], None],
                 store_lost: Callable[[Exception], None]) -> None:
        self._store, self._key, self._interval, self._watch = store, key, interval, watch
        self._store_lost = store_lost
        self._stop = threading.Event()
        self._store.add(key, 1)
        self._thread = threading.Thread(target=self._run, name="eval-anything-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._store.add(self._key, 1)
                self._watch(self._store)
            except Exception as exc:  # the store is gone: noted for the main thread's next check or barrier
                self._store_lost(exc)
                return

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class _Liveness:
    """When each rank's heartbeat counter last moved, on this process's monotonic clock."""

    def __init__(self, ranks: Sequence[int], now: float) -> None:
        self.seen: dict[int, tuple[int | None, float]] = {r: (None, now) for r in ranks}

    def stalled(self, rank: int, counter: int, now: float, timeout: float) -> float | None:
        """Seconds the counter has stood still when that is longer than `timeout`, else None."""
        last, since = self.seen[rank]
        if counter != last:
            self.seen[rank] = (counter, now)
            return None
        return now - since if now - since > timeout else None


class RankGroup:
    """Rank `rank` of `world`, meeting the others at `store` under the namespace `session`."""

    def __init__(self, store: Any, rank: int, world: int, timeout: float, session: int) -> None:
        self.rank, self.world, self.timeout = rank, world, timeout
        self._store = store
        self._namespace = f"{PREFIX}/{session}"
        self._steps = 0
        self._who: dict[int, dict[str, Any]] = {}
        self.lost: RankLostError | None = None
        """A rank the heartbeat thread found dead while this one was busy; `check()` raises it."""
        self._others = _Liveness([r for r in range(world) if r != rank], time.monotonic())
        self._gone: set[int] = set()
        self._guard(lambda: store.set(self._key("who", rank), json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid()})))
        self._heartbeat = self._guard(lambda: _Heartbeat(store.clone(), self._key("beat", rank),
                                                         heartbeat_interval(timeout), self._watch,
                                                         self._note_store_lost))

    def _key(self, *parts: Any) -> str:
        return "/".join((self._namespace, *map(str, parts)))

    # ----------------------------------------------------------------- what the ranks do together

    def barrier(self) -> None:
        self._meet("arrived", "1")

    def total(self, count: int) -> int:
        """The sum of `count` over every rank."""
        step = self._meet("count", str(count))
        values = self._guard(lambda: self._store.multi_get([self._key("count", step, r) for r in range(self.world)]))
        return sum(int(v) for v in values)

    def check(self) -> None:
        """Raise RankLostError when another rank died while this one evaluated its share (called
        between samples, so that it stops within the rank timeout, not at the next barrier)."""
        if self.lost is not None:
            raise self.lost

    def _watch(self, store: Any) -> None:
        """In the heartbeat thread, on its own connection: note a rank whose counter stood still for
        the timeout (one that left at the end of the run is not dead)."""
        if self.lost is not None:
            return
        now = time.monotonic()
        for rank in self._others.seen:
            if rank in self._gone or store.check([self._key("left", rank)]):
                self._gone.add(rank)
                continue
            stalled = self._others.stalled(rank, store.add(self._key("beat", rank), 0), now, self.timeout)
            if stalled is not None:
                who = json.loads(store.get(self._key("who", rank)))
                self.lost = RankLostError(
                    f"rank {rank} of {self.world} (host {who['host']}, pid {who['pid']}) sent no heartbeat for "
                    f"{stalled:.0f} s while rank {self.rank} was evaluating its share: it was killed, crashed or "
                    f"lost its host (--rank-timeout is {self.timeout:g} s); rank {self.rank}'s finished samples "
                    "are in its shard")
                return

    def _note_store_lost(self, exc: Exception) -> None:
        if self.lost is None and not self._heartbeat_stopped():
            self.lost = self._store_gone(exc)

    def _heartbeat_stopped(self) -> bool:
        heartbeat = getattr(self, "_heartbeat", None)
        return heartbeat is not None and heartbeat.stopped

    def leave(self) -> None:
        """Stop beating; rank 0 hosts the store (unless the launcher's agent does), so it goes last."""
        self._heartbeat.stop()
        self._guard(lambda: self._store.set(self._key("left", self.rank), "1"))
        if self.rank == 0:
            self._wait_for(lambda r: self._key("left", r), range(1, self.world), "the others to leave")

    # ----------------------------------------------------------------- waiting

    def _meet(self, kind: str, value: str) -> int:
        step, self._steps = self._steps, self._steps + 1
        self._guard(lambda: self._store.set(self._key(kind, step, self.rank), value))
        self._guard(lambda: self._store.add(self._key(kind, step), 1))
        self._wait_for(lambda r: self._key(kind, step, r), range(self.world), _WAITS[kind],
                       counter=self._key(kind, step))
        if not self._who:  # every rank has said who it is by now: kept to name one that is lost later
            self._who = self._identities()
        return step

    def _wait_for(self, key_of: Callable[[int], str], ranks: range, what: str, counter: str | None = None) -> None:
        """Until every rank in `ranks` has set its key (or, with `counter`, bumped it), watching the
        heartbeats of those that have not."""
        interval = heartbeat_interval(self.timeout) / 2
        liveness = _Liveness(ranks, time.monotonic())
        next_look = time.monotonic() + interval
        while not self._all_arrived(key_of, ranks, counter):
            now = time.monotonic()
            if now >= next_look:
                missing = [r for r in ranks if not self._guard(lambda r=r: self._store.check([key_of(r)]))]
                self._look(missing, liveness, now, what)
                next_look = now + interval
            time.sleep(POLL_S)

    def _all_arrived(self, key_of: Callable[[int], str], ranks: range, counter: str | None) -> bool:
        if counter is not None:  # one request however many ranks
            return self._guard(lambda: self._store.add(counter, 0)) >= len(ranks)
        return self._guard(lambda: self._store.check([key_of(r) for r in ranks]))

    def _look(self, missing: list[int], liveness: _Liveness, now: float, what: str) -> None:
        for rank in missing:
            counter = self._guard(lambda: self._store.add(self._key("beat", rank), 0))
            stalled = liveness.stalled(rank, counter, now, self.timeout)
            if stalled is not None:
                raise RankLostError(
                    f"rank {rank} of {self.world} ({self._describe(rank)}) sent no heartbeat for {stalled:.0f} s "
                    f"while rank {self.rank} waited for it at {what}: it was killed, crashed or lost its host "
                    f"(a rank that is only busy keeps beating; --rank-timeout is {self.timeout:g} s)")

    # ----------------------------------------------------------------- who is who

    def _identities(self) -> dict[int, dict[str, Any]]:
        values = self._guard(lambda: self._store.multi_get([self._key("who", r) for r in range(self.world)]))
        return {r: json.loads(v) for r, v in enumerate(values)}

    def _describe(self, rank: int, ask: bool = True) -> str:
        who = self._who.get(rank)
        if who is None and ask:
            try:
                who = json.loads(self._store.get(self._key("who", rank)))
            except Exception:  # a description must never hide the error it is part of
                who = None
        return f"host {who['host']}, pid {who['pid']}" if who else "host and pid unknown"

    def _guard(self, operation: Callable[[], T]) -> T:
        """`operation()`; a store that cannot be reached is the loss of the rank (or launcher) hosting it."""
        try:
            return operation()
        except RankLostError:
            raise
        except RuntimeError as exc:  # torch.distributed.DistError and its kin, from the store's client
            raise self._store_gone(exc) from None

    def _store_gone(self, exc: Exception) -> RankLostError:
        where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        return RankLostError(
            f"rank {self.rank} of {self.world} lost the store the ranks meet at ({where}), hosted by rank 0 "
            f"({self._describe(0, ask=False)}) or its launcher: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}")


_sessions = itertools.count()


@functools.lru_cache(maxsize=None)
def _store(rank: int, world: int) -> Any:
    """One connection per process to the store the launcher's environment names (env://, as torch's
    own `init_process_group`: rank 0 hosts it, or torchrun's agent does)."""
    import torch.distributed as dist

    store, _, _ = next(dist.rendezvous("env://", rank, world, timeout=timedelta(seconds=JOIN_TIMEOUT_S)))
    return store


def join(rank: int, world: int, timeout: float) -> RankGroup:
    """Meet the other ranks; each call in a process is a new session of keys, so that a process may
    run several evaluations one after the other."""
    store = _store(rank, world)
    store.set_timeout(timedelta(seconds=max(timeout, POLL_S)))
    return RankGroup(store, rank, world, timeout, next(_sessions))
