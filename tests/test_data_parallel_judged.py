"""Data-parallel evaluation of a judged task: 2 real CPU processes (accelerate, gloo) against one.

Answers are replayed and the judge is the `openai` backend pointed at a stub server in this
process, so the run costs start-up only. Each rank judges its own samples into the one judge cache
(sqlite, WAL) that every rank opens at once.
"""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from eval_anything.cli import main
from eval_anything.judges.cache import JudgeCache
from eval_anything.results import JUDGE_COUNTS
from stub_openai import StubServer, completion, user_text
from test_data_parallel import _only_dir, _records as _task_records, _run_two, _untimed

TASK = "judged_dp"
KEY_ENV = "EVAL_ANYTHING_TEST_DP_JUDGE_KEY"
ITEMS = [(f"q{i}", f"What is {i} + {i}?", str(2 * i)) for i in range(7)]
RETRIED = "What is 3 + 3?"
"""Its first judge reply is malformed, so it is asked twice: two calls for one judgement."""


@pytest.fixture()
def judged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv(KEY_ENV, "sk-dp-judge-NOT-REAL")
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "qa.jsonl").write_text("".join(json.dumps({"id": i, "question": q, "answer": a}) + "\n"
                                             for i, q, a in ITEMS))
    (folder / "qa.yaml").write_text(textwrap.dedent(f"""
        name: {TASK}
        version: 1
        dataset: {{path: qa.jsonl}}
        input: [{{text: question}}]
        target: answer
        scorers: [judge_rating, numeric]
    """))
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text("".join(json.dumps({"task": TASK, "id": i, "text": f"It is {a}." if n % 3 else "no idea"})
                                   + "\n" for n, (i, _, a) in enumerate(ITEMS)))
    return {"tasks": folder, "predictions": predictions}


class Judge:
    """A stub judge: the rating depends on the question only (so on no rank or order); the
    RETRIED question's first reply cannot be parsed."""

    def __init__(self) -> None:
        self.asked: dict[str, int] = {}
        self.server = StubServer(self.reply)

    def reply(self, call: int, body: dict[str, Any], auth: str):
        text = user_text(body)
        question = next(q for _, q, _ in ITEMS if q in text)
        with self.server.lock:
            self.asked[question] = self.asked.get(question, 0) + 1
            first = self.asked[question] == 1
        if question == RETRIED and first:
            return 200, {}, completion("Rating: [[7", 30, 4), 0.0
        rating = 1 + ITEMS.index(next(item for item in ITEMS if item[1] == question))
        return 200, {}, completion(f"Explanation: ok.\nRating: [[{rating}]]", 30, 6), 0.0

    def __enter__(self) -> "Judge":
        self.server.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.__exit__(*exc)


def _args(judged: dict[str, Path], judge: Judge, cache: Path, output: Path) -> list[str]:
    return ["--model", f"replay:{judged['predictions']}", "--include-path", str(judged["tasks"]), "--tasks", TASK,
            "--judge", "openai:stub-judge",
            "--judge-args", f"base_url={judge.server.base_url},api_key_env={KEY_ENV},concurrency=4,max_retries=0",
            "--judge-retries", "2", "--judge-cache", str(cache), "--output-dir", str(output)]


def _records(run_dir: Path) -> list[dict]:
    return _task_records(run_dir, TASK)


def _accounting(judge: dict[str, Any]) -> dict[str, Any]:
    """A run's judge counts (the stub's address differs between runs)."""
    return {key: judge[key] for key in ("backend", "reference", "weak_default", *JUDGE_COUNTS)}


def _by_id(records: list[dict]) -> dict[str, dict]:
    """One process writes samples as their judgements complete, rank 0 merges in the task's order."""
    return {r["id"]: r for r in records}


def _without_cache_counts(records: list[dict]) -> list[dict]:
    """Records with each verdict's calls/cached counts dropped: a cached rerun differs only there."""
    records = json.loads(json.dumps(records))
    for record in records:
        for verdict in record["scores"]["judge_rating"]["details"]["judge"]:
            verdict.pop("calls"), verdict.pop("cached")
    return records


def _cache_rows(folder: Path) -> tuple[str, int, str]:
    """The journal mode of the cache's files, the distinct replies they hold, their integrity."""
    modes, keys, checks = set(), set(), set()
    for path in folder.glob("writer-*.sqlite"):
        with sqlite3.connect(path) as db:
            modes.add(db.execute("PRAGMA journal_mode").fetchone()[0])
            keys.update(k for (k,) in db.execute("SELECT key FROM replies"))
            checks.add(db.execute("PRAGMA integrity_check").fetchone()[0])
    (mode,), (check,) = modes, checks
    return mode, len(keys), check


def test_two_ranks_judged_equal_one_process_and_share_the_judge_cache(tmp_path: Path, judged: dict[str, Path]) -> None:
    judgements, calls = len(ITEMS), len(ITEMS) + 1  # one judgement per sample; RETRIED costs two calls
    with Judge() as judge:
        assert main(["run", *_args(judged, judge, tmp_path / "one.sqlite", tmp_path / "one")]) == 0
        assert judge.server.calls == calls
    single = _only_dir(tmp_path / "one")
    one = json.loads((single / "results.json").read_text())
    task = one["tasks"][TASK]
    assert task["judge"]["calls"] == calls and task["judge"]["cached"] == 0 and task["judge"]["parse_retries"] == 1
    assert task["metrics"]["judge_rating"]["n"] == judgements

    # two ranks, a fresh cache that both open at once
    cache = tmp_path / "shared.sqlite"
    with Judge() as judge:
        out = _run_two(_args(judged, judge, cache, tmp_path / "two"), tmp_path)
        assert judge.server.calls == calls  # each sample judged by one rank, once
        assert sorted(judge.asked.values()) == sorted([1] * (judgements - 1) + [2])
    parallel = _only_dir(tmp_path / "two")
    assert parallel.name == single.name
    ids = [i for i, _, _ in ITEMS]
    assert [r["id"] for r in _records(parallel)] == ids  # merged in the task's order, each sample once
    assert _by_id(_records(parallel)) == _by_id(_records(single))  # same answers, scores and verdicts
    two = json.loads((parallel / "results.json").read_text())
    assert two["status"] == "complete"
    assert _untimed(two["tasks"]) == _untimed(one["tasks"])
    # the run's judge accounting: every rank's calls, each counted once
    assert _accounting(two["judge"]) == _accounting(one["judge"])
    assert two["judge"]["calls"] == calls and two["judge"]["parse_retries"] == 1
    assert f"judge openai:stub-judge: {calls} calls, 0 cached" in out and out.count("judge openai:stub-judge") == 1
    assert not list((parallel / "samples").glob("*.rank*"))
    assert _cache_rows(cache) == ("wal", calls, "ok")  # every reply each rank stored, none lost

    # two ranks again, another run directory, the same cache: every judgement comes from it
    with Judge() as judge:
        out = _run_two(_args(judged, judge, cache, tmp_path / "three"), tmp_path)
        assert judge.server.calls == 0
    cached = _only_dir(tmp_path / "three")
    three = json.loads((cached / "results.json").read_text())["tasks"][TASK]
    assert three["metrics"] == task["metrics"]
    assert three["judge"]["calls"] == 0 and three["judge"]["cached"] == calls
    assert _by_id(_without_cache_counts(_records(cached))) == _by_id(_without_cache_counts(_records(single)))
    assert f"judge openai:stub-judge: 0 calls, {calls} cached" in out
    assert _cache_rows(cache) == ("wal", calls, "ok")


WRITER = """
import sys, time
from pathlib import Path
from eval_anything.judges.cache import JudgeCache
from eval_anything.results import JUDGE_COUNTS
path, rank, start = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))  # every writer opens the fresh file at the same moment
cache = JudgeCache(path)
for i in range(40):
    cache.put(f"{rank}-{i}", "stub", f"reply {rank} {i}", i, 1)
    cache.put("shared", "stub", "the same reply", 1, 1)  # every rank writes one key too
    assert cache.get(f"{rank}-{i}") == (f"reply {rank} {i}", i, 1)
cache.close()
"""


def test_judge_cache_opened_and_written_by_many_processes_at_once(tmp_path: Path) -> None:
    """What ranks do to a fresh shared cache: open it and write, concurrently, each into its own file."""
    import time

    path, writers = tmp_path / "cache.sqlite", 4
    start = time.time() + 1.5
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(rank), str(start)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for rank in range(writers)]
    for process in processes:
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0, out
    assert _cache_rows(path) == ("wal", writers * 40 + 1, "ok")
    assert len(list(path.glob("writer-*.sqlite"))) <= writers
    cache = JudgeCache(path)
    assert cache.get("3-39") == ("reply 3 39", 39, 1) and cache.get("shared") == ("the same reply", 1, 1)
    cache.close()
