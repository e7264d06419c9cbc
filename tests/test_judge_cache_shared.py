"""The judge cache where outputs are shared: one file per writer (no two processes write one file),
the rollback journal where the filesystem may be shared, nothing committed lost to a killed writer,
and every unusable file named in one JudgeCacheError."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from eval_anything.judges import cache as judge_cache
from eval_anything.judges.cache import JudgeCache, JudgeCacheError

WRITER = """
import sys, time
from pathlib import Path
from eval_anything.judges import cache as judge_cache
judge_cache.LOCAL_FILESYSTEMS = frozenset()  # as on NFS: the rollback journal
folder, name, rows, other = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
cache = judge_cache.JudgeCache(folder)
seen = 0
for i in range(rows):
    cache.put(f"{name}-{i}", "stub", f"reply {name} {i}", i, 1)
    assert cache.get(f"{name}-{i}") == (f"reply {name} {i}", i, 1)
    seen += cache.get(f"{other}-{i}") is not None  # the other writer's rows, where its file was there at opening
print("committed", seen, flush=True)
if name == "killed":
    time.sleep(600)
cache.close()
"""


def _writer(folder: Path, name: str, rows: int, other: str = "") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(folder), name, str(rows), other],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _modes(folder: Path) -> set[str]:
    modes = set()
    for path in folder.glob("writer-*.sqlite"):
        with sqlite3.connect(path) as db:
            modes.add(db.execute("PRAGMA journal_mode").fetchone()[0])
    return modes


def test_writers_on_a_shared_folder_each_own_a_file_and_a_killed_one_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(judge_cache, "LOCAL_FILESYSTEMS", frozenset())
    folder = tmp_path / "cache"
    killed = _writer(folder, "killed", 30)
    assert killed.stdout.readline().startswith("committed"), killed.stdout.read()
    killed.send_signal(signal.SIGKILL)  # holding its file, its lock, its connection
    killed.wait()
    writers = [_writer(folder, "a", 60, "b"), _writer(folder, "b", 60, "a")]
    for writer in writers:
        out, _ = writer.communicate(timeout=120)
        assert writer.returncode == 0, out  # no "database is locked", no other sqlite error
    assert _modes(folder) == {"delete"}
    assert len(list(folder.glob("writer-*.sqlite"))) <= 3  # the killed writer's slot was taken over, or is free

    cache = JudgeCache(folder)
    try:
        assert len(cache) == 30 + 60 + 60  # every committed reply, the killed writer's included
        assert cache.get("killed-29") == ("reply killed 29", 29, 1)
        assert cache.get("a-59") == ("reply a 59", 59, 1) and cache.get("b-0") == ("reply b 0", 0, 1)
        cache.put("mine", "stub", "x", 1, 1)
    finally:
        cache.close()


def test_local_filesystem_gets_wal_and_the_mount_table_is_read(tmp_path: Path) -> None:
    assert judge_cache.filesystem_type(tmp_path) is not None
    cache = JudgeCache(tmp_path / "cache")
    cache.close()
    expected = "wal" if judge_cache.filesystem_type(tmp_path) in judge_cache.LOCAL_FILESYSTEMS else "delete"
    assert _modes(tmp_path / "cache") == {expected}


def _error(folder: Path) -> JudgeCacheError:
    with pytest.raises(JudgeCacheError) as caught:
        JudgeCache(folder).close()
    return caught.value


def test_corrupt_locked_and_unwritable_caches_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "corrupt"
    folder.mkdir()
    (folder / "writer-0.sqlite").write_bytes(os.urandom(4096))  # the file this process would write
    error = _error(folder)
    assert error.path == folder / "writer-0.sqlite" and "corrupt" in str(error)
    assert str(folder / "writer-0.sqlite") in str(error) and "--judge-cache off" in str(error)

    folder = tmp_path / "other-corrupt"
    JudgeCache(folder).close()
    (folder / "writer-1.sqlite").write_bytes(b"not a database" * 300)  # another writer's file
    error = _error(folder)
    assert error.path == folder / "writer-1.sqlite" and "corrupt" in str(error)

    # another process holds a writer's file (an exclusive transaction) for longer than the timeout
    monkeypatch.setattr(judge_cache, "LOCAL_FILESYSTEMS", frozenset())
    monkeypatch.setattr(judge_cache, "OPEN_TIMEOUT_S", 0.2)
    folder = tmp_path / "locked"
    JudgeCache(folder).close()
    holder = sqlite3.connect(folder / "writer-0.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    error = _error(folder)
    holder.close()
    assert error.path == folder / "writer-0.sqlite" and "locked" in str(error), error

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    error = _error(blocked / "cache")  # its parent cannot be a folder
    assert str(blocked / "cache") in str(error) and "--judge-cache off" in str(error)
    if os.geteuid() != 0:  # root writes anywhere
        readonly = tmp_path / "readonly"
        readonly.mkdir(mode=0o500)
        assert "--judge-cache off" in str(_error(readonly))


def test_the_single_file_of_earlier_versions_is_still_read(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:  # the layout earlier versions wrote
        db.execute(judge_cache._SCHEMA)
        db.execute("INSERT INTO replies (key, judge, text, input_tokens, output_tokens) "
                   "VALUES ('old', 'stub', 'an earlier reply', 3, 1)")
    cache = JudgeCache(tmp_path / "cache")
    try:
        assert cache.get("old") == ("an earlier reply", 3, 1)
        cache.put("new", "stub", "a new reply", 2, 1)
        assert len(cache) == 2
    finally:
        cache.close()
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:  # the earlier file is only read
        assert db.execute("SELECT COUNT(*) FROM replies").fetchone()[0] == 1
