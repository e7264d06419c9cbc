"""One process per run directory: an flock on `<run>/.lock` (the kernel releases it when its holder
dies, however it dies), with the holder's pid and host in `<run>/.lock.holder` so that a second
process can say whom it waits for. Data-parallel ranks other than 0 lock `<run>/.lock.rank<r>`, so
two launches of one job never write the same shard."""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from eval_anything.errors import RunDirectoryBusy, writing
from eval_anything.rundir import write_json_atomic

LOCK = ".lock"
HOLDER_SUFFIX = ".holder"
STALE_HOLDER_RETRIES = 10
"""How often (0.05 s apart) a waiter rereads a holder file naming a dead process: the new holder
rewrites it right after taking the lock."""


def is_lock_file(path: Path) -> bool:
    """A run directory's lock or holder file (of the run or a rank): not part of the run's record."""
    return path.name.startswith(LOCK)


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as its side file says."""

    pid: int
    host: str
    since: str
    """When it took the lock (UTC, ISO 8601)."""

    def alive(self) -> bool:
        """False only when the holder is on this host and its pid is gone (a stale side file)."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process
            return True
        return True

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (since {self.since})"


def lock_name(rank: int) -> str:
    """The lock file of data-parallel rank `rank`: the run lock for rank 0 (and single-process runs)."""
    return LOCK if rank == 0 else f"{LOCK}.rank{rank}"


@contextlib.contextmanager
def run_directory_lock(folder: Path, wait: bool = True, rank: int = 0) -> Iterator[None]:
    """Hold `folder`'s lock (rank `rank`'s) for the block. Another process holding it: wait, saying
    for whom once on stderr, or with `wait=False` raise RunDirectoryBusy."""
    path = folder / lock_name(rank)
    side = path.with_name(path.name + HOLDER_SUFFIX)
    with writing(path):
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path)
        _acquire(lock, side, folder, wait)
    try:
        with writing(side):
            _write_holder(side)
        yield
    finally:
        side.unlink(missing_ok=True)
        lock.release()


def _acquire(lock: FileLock, side: Path, folder: Path, wait: bool) -> None:
    try:
        lock.acquire(timeout=0)
        return
    except Timeout:
        pass
    holder = _current_holder(side)
    whom = holder.describe() if holder is not None else "another process"
    if not wait:
        raise RunDirectoryBusy(f"run directory {folder} is in use by {whom}: wait for it to finish (rerun "
                               "without --no-wait to wait), or choose another --output-dir")
    print(f"eval-anything: run directory {folder} is in use by {whom}; waiting for it to finish "
          "(--no-wait exits instead)", file=sys.stderr, flush=True)
    lock.acquire()


def _current_holder(side: Path) -> Holder | None:
    """The holder its side file names; None when there is none, or it names a dead process for
    longer than the new holder takes to rewrite it."""
    for _ in range(STALE_HOLDER_RETRIES):
        holder = _read_holder(side)
        if holder is None or holder.alive():
            return holder
        time.sleep(0.05)
    return None


def _read_holder(side: Path) -> Holder | None:
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
        return Holder(int(data["pid"]), str(data["host"]), str(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_holder(side: Path) -> None:
    since = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    write_json_atomic(side, {"pid": os.getpid(), "host": socket.gethostname(), "since": since})
