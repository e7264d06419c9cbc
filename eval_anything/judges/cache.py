"""A persistent judge cache shared across runs and processes: a folder of SQLite files, one per
writer, one row per judge reply.

One writer per file: a process (a run, a data-parallel rank, on any host) claims the first
`writer-<k>.sqlite` whose lock no live process holds, for as long as it is open, and writes only
there; it reads its own file first, then every other writer's file present when it opened. Writers
never contend for a file, so a shared folder (NFS, a cluster filesystem) needs no locking beyond
the readers' shared locks, and the number of files stays at the most writers ever open at once.

Each reply is committed as it arrives, so a killed process loses no completed judgement. On a local
filesystem the writer's file is in WAL mode (synchronous=NORMAL: no fsync per reply, ~0.01 ms a
commit); elsewhere, or where the filesystem cannot be told, in rollback-journal mode
(journal_mode=DELETE, synchronous=FULL: ~1.2 ms a commit on a local disk), because WAL's
shared-memory index does not work across hosts, which SQLite documents as unsafe on network
filesystems. A file that cannot be opened, read or written raises `JudgeCacheError`.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sqlite3
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, TypeVar

from eval_anything.datamodel import Part
from eval_anything.errors import EXIT_CANNOT_WRITE, UserError
from eval_anything.files import file_sha256

_SCHEMA = """CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY, judge TEXT NOT NULL, text TEXT NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, created REAL DEFAULT (julianday('now')))"""


def cache_key(judge: dict[str, Any], rubric_hash: str, text: str, media: list[dict[str, Any]],
              sampling: dict[str, Any], attempt: int) -> str:
    """What makes a judge reply reusable: judge identity, template, rendered prompt, media, sampling."""
    material = json.dumps([judge, rubric_hash, text, media, sampling, attempt], sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()


def media_key(part: Part) -> dict[str, Any]:
    """A media part by modality and content, so the same bytes anywhere (another run directory's
    generated media, a copied dataset) hit the cache; a missing file falls back to its path."""
    if part.data is not None:
        return {"modality": part.modality.value, "sha256": hashlib.sha256(part.data).hexdigest()}
    try:
        stat = Path(part.path).stat()
    except (OSError, TypeError):
        return part.reference()
    return {"modality": part.modality.value, "sha256": _content_hash(part.path, stat.st_size, stat.st_mtime_ns)}


@lru_cache(maxsize=4096)
def _content_hash(path: str, size: int, mtime_ns: int) -> str:
    # size and mtime in the memo key: a file rewritten in place is hashed again
    return file_sha256(Path(path))


OPEN_TIMEOUT_S = 30.0
WRITER_GLOB = "writer-*.sqlite"
LOCAL_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "jfs", "bcachefs",
                               "tmpfs", "ramfs", "overlay"})
"""Where WAL is safe: filesystems of one host. Anything else (nfs, cifs, lustre, gpfs, beegfs,
ceph, fuse mounts, or a type not known) gets the rollback journal."""

T = TypeVar("T")


class JudgeCacheError(UserError, RuntimeError):
    """A judge cache file that cannot be opened, read or written: corrupt, locked, full or not
    writable. Names the file and the fault; the run can go on without the cache."""

    exit_code = EXIT_CANNOT_WRITE

    def __init__(self, path: Path, fault: str) -> None:
        super().__init__(f"judge cache {path}: {fault} -> fix or remove it, choose another folder with "
                         f"--judge-cache DIR, or run without the cache: --judge-cache off")
        self.path = path
        self.fault = fault


def _sqlite(path: Path, operation: Callable[[], T]) -> T:
    """`operation()`, with sqlite's and the OS's errors as one JudgeCacheError naming `path`."""
    try:
        return operation()
    except sqlite3.DatabaseError as exc:  # OperationalError ("locked", "disk I/O error", "readonly") included
        raise JudgeCacheError(path, _fault(exc)) from None
    except OSError as exc:
        raise JudgeCacheError(path, exc.strerror or str(exc)) from None


def _fault(exc: sqlite3.DatabaseError) -> str:
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return f"corrupt ({text})"
    if "locked" in text or "busy" in text:
        return f"locked by another process for over {OPEN_TIMEOUT_S:g} s ({text})"
    if "unable to open" in text or "readonly" in text:
        return f"cannot be written ({text}): check the folder's permissions"
    return text


def _select(path: Path, db: sqlite3.Connection, query: str, parameters: tuple = ()) -> list[Any]:
    """The rows of `query`; none from a writer's file that has no table yet (it is opening)."""
    def rows() -> list[Any]:
        try:
            return db.execute(query, parameters).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise

    return _sqlite(path, rows)


def _execute_while_locked(db: sqlite3.Connection, statement: str) -> None:
    """Run `statement`, waiting out other processes that hold the file: switching a file's journal
    mode answers "database is locked" at once, without sqlite's busy timeout, while a reader has it."""
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    while True:
        try:
            db.execute(statement)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02 + random.random() * 0.05)


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding `path`, from the longest mount point above it in
    /proc/self/mounts; None where that cannot be read (not Linux)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    target, best, kind = os.path.realpath(path), "", None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])  # a space is \040
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def journal_mode(folder: Path) -> str:
    """WAL on a filesystem of one host, the rollback journal anywhere else."""
    return "WAL" if filesystem_type(folder) in LOCAL_FILESYSTEMS else "DELETE"


class _WriterSlot:
    """The first `writer-<k>.sqlite` in the folder whose lock file no live process holds; the
    kernel drops the lock of a killed process, so its file is taken over by the next writer."""

    def __init__(self, folder: Path) -> None:
        from filelock import FileLock, Timeout

        for k in range(10_000):
            lock = FileLock(folder / f"writer-{k}.sqlite.lock")
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            self.lock, self.path = lock, folder / f"writer-{k}.sqlite"
            return
        raise JudgeCacheError(folder, "10 000 writers hold it at once")

    def release(self) -> None:
        self.lock.release()


class JudgeCache:
    """The cache in `folder`: this process's own file for writes, every writer's file for reads."""

    def __init__(self, folder: Path) -> None:
        self.path = folder
        if folder.is_file():
            raise JudgeCacheError(folder, "is a file; the judge cache is a folder of one SQLite file per writer")
        _sqlite(folder, lambda: folder.mkdir(parents=True, exist_ok=True))
        self._slot = _sqlite(folder, lambda: _WriterSlot(folder))
        self._lock = threading.Lock()
        self._readers: list[tuple[Path, sqlite3.Connection]] = []
        try:
            self._own = self._open(self._slot.path, journal_mode(folder))
            others = [p for p in sorted(folder.glob(WRITER_GLOB)) if p != self._slot.path]
            legacy = folder.with_suffix(".sqlite")  # the single file earlier versions wrote: still read
            for path in (*others, *((legacy,) if legacy.is_file() else ())):
                self._readers.append((path, self._open(path, None)))
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _open(path: Path, mode: str | None) -> sqlite3.Connection:
        """A connection to `path`; `mode`: switch it to that journal mode and make its table (the
        writer), None: leave the file as its writer made it (a reader)."""
        db = _sqlite(path, lambda: sqlite3.connect(path, timeout=OPEN_TIMEOUT_S, check_same_thread=False,
                                                   isolation_level=None))
        try:
            statements = ((f"PRAGMA journal_mode={mode}", "PRAGMA synchronous=" +
                           ("NORMAL" if mode == "WAL" else "FULL"), _SCHEMA) if mode else ())
            for statement in statements:
                _sqlite(path, lambda: _execute_while_locked(db, statement))
            _sqlite(path, lambda: db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone())  # a corrupt file fails here
        except BaseException:
            db.close()
            raise
        return db

    def get(self, key: str) -> tuple[str, int, int] | None:
        with self._lock:
            for path, db in self._files():
                rows = _select(path, db, "SELECT text, input_tokens, output_tokens FROM replies WHERE key = ?", (key,))
                if rows:
                    return (rows[0][0], rows[0][1], rows[0][2])
        return None

    def _files(self) -> list[tuple[Path, sqlite3.Connection]]:
        """This writer's file first, then the others'."""
        return [(self._slot.path, self._own), *self._readers]

    def put(self, key: str, judge: str, text: str, input_tokens: int, output_tokens: int) -> None:
        with self._lock:
            _sqlite(self._slot.path, lambda: self._own.execute(
                "INSERT OR REPLACE INTO replies (key, judge, text, input_tokens, output_tokens) VALUES (?, ?, ?, ?, ?)",
                (key, judge, text, input_tokens, output_tokens)))

    def __len__(self) -> int:
        """Distinct replies held, over every writer's file."""
        with self._lock:
            return len({k for path, db in self._files() for (k,) in _select(path, db, "SELECT key FROM replies")})

    def close(self) -> None:
        with self._lock:
            own, self._own = getattr(self, "_own", None), None
            for db in (*(db for _, db in self._readers), *((own,) if own is not None else ())):
                db.close()
            self._readers = []
            self._slot.release()
