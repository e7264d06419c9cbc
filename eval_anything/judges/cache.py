"""A persistent judge cache shared across runs: sqlite in WAL mode, one row per judge reply.

Each reply is committed as it arrives (WAL with synchronous=NORMAL survives a killed process
without an fsync per row), so a crash mid-judging loses no completed judgement.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

_SCHEMA = """CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY, judge TEXT NOT NULL, text TEXT NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, created REAL DEFAULT (julianday('now')))"""


def cache_key(judge: dict[str, Any], rubric_hash: str, text: str, media: list[dict[str, Any]],
              sampling: dict[str, Any], attempt: int) -> str:
    """What makes a judge reply reusable: judge identity, template, rendered prompt, media, sampling."""
    material = json.dumps([judge, rubric_hash, text, media, sampling, attempt], sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()


class JudgeCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
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
