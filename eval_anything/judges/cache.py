"""A persistent judge cache shared across runs: sqlite in WAL mode, one row per judge reply.

Each reply is committed as it arrives (WAL with synchronous=NORMAL survives a killed process
without an fsync per row), so a crash mid-judging loses no completed judgement.
"""
from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from eval_anything.datamodel import Part
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


def _execute_while_locked(db: sqlite3.Connection, statement: str) -> None:
    """Run `statement`, waiting out other processes that hold the file: switching a fresh file to
    WAL answers "database is locked" at once, without sqlite's busy timeout, while another
    process (a data-parallel rank opening the same cache) is doing the same."""
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    while True:
        try:
            db.execute(statement)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02 + random.random() * 0.05)


class JudgeCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=OPEN_TIMEOUT_S, check_same_thread=False, isolation_level=None)
        for statement in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", _SCHEMA):
            _execute_while_locked(self._db, statement)
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[str, int, int] | None:
        with self._lock:
            row = self._db.execute("SELECT text, input_tokens, output_tokens FROM replies WHERE key = ?",
                                   (key,)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def put(self, key: str, judge: str, text: str, input_tokens: int, output_tokens: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies (key, judge, text, input_tokens, output_tokens) "
                             "VALUES (?, ?, ?, ?, ?)", (key, judge, text, input_tokens, output_tokens))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
