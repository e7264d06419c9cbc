"""Data-parallel evaluation: 2 real CPU processes under `accelerate launch` (gloo), against one process.

On a machine without a GPU, `accelerate launch --cpu` runs one process; two need
`ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2` (see the README's
"Scaling out").
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from eval_anything.cli import main
from eval_anything.rundir import RunDirectory, SampleLog
from eval_anything.tasks import Catalog

TASK = "arith_mini"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(args: list[str], cwd: Path, marker: str = "") -> subprocess.Popen:
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "EVAL_ANYTHING_DP_TEST": marker}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", "eval_anything", "run", *args]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run_two(args: list[str], cwd: Path) -> str:
    process = _launch(args, cwd)
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out
    return " ".join(out.split())  # rich wraps long lines


def _only_dir(root: Path) -> Path:
    (path,) = root.iterdir()
    return path


def _records(run_dir: Path, task: str = TASK) -> list[dict]:
    records = list(SampleLog(run_dir / "samples" / f"{task}.jsonl"))
    for record in records:
        for output in record["outputs"]:
            output.pop("latency_s", None)  # wall time differs between runs
    return records


def _untimed(tasks: dict) -> dict:
    """Task results without wall times (generation_s sums each sample's latency)."""
    return {name: {**t, "usage": {k: v for k, v in t.get("usage", {}).items() if k != "generation_s"}}
            for name, t in tasks.items()}


def _assert_same_run(single: Path, parallel: Path, limit: int) -> None:
    one, two = _records(single), _records(parallel)
    ids = [s.id for s in Catalog().tasks[TASK].samples(limit)]
    assert [r["id"] for r in two] == ids  # merged in the task's sample order, each sample once
    assert {r["id"]: r for r in one} == {r["id"]: r for r in two}
    a, b = (json.loads((d / "results.json").read_text()) for d in (single, parallel))
    assert a["status"] == b["status"] == "complete"
    assert _untimed(a["tasks"]) == _untimed(b["tasks"])
    assert not list((parallel / "samples").glob("*.rank*"))  # shards are gone once merged
    assert json.loads((parallel / "manifest.json").read_text())["data_parallel"] == {"world_size": 2}


@pytest.fixture()
def predictions(tmp_path: Path) -> Path:
    task = Catalog().tasks[TASK]
    rows = [{"task": TASK, "id": s.id, "text": f"It is {s.target[0]}" if i % 3 else "no idea"}
            for i, s in enumerate(task.samples())]
    path = tmp_path / "preds.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_two_ranks_replay_equal_one_process(tmp_path: Path, predictions: Path) -> None:
    args = ["--model", f"replay:{predictions}", "--tasks", TASK, "--limit", "8"]
    assert main(["run", *args, "--output-dir", str(tmp_path / "one")]) == 0
    out = _run_two([*args, "--output-dir", str(tmp_path / "two")], tmp_path)
    assert "generated 8 requests" in out  # counted over both ranks, reported once by rank 0
    assert out.count("run directory:") == 1
    _assert_same_run(_only_dir(tmp_path / "one"), _only_dir(tmp_path / "two"), 8)


def _rank_pid(marker: str, rank: int) -> int | None:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"EVAL_ANYTHING_DP_TEST={marker}".encode() in environ and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


def test_two_ranks_smollm2_equal_one_process_and_resume_after_a_rank_is_killed(
        tmp_path: Path, smollm2_dir: Path) -> None:
    args = ["--model", "embedded:smollm2-135m-instruct", "--batch-size", "1", "--tasks", TASK, "--limit", "8"]
    assert main(["run", *args, "--output-dir", str(tmp_path / "one")]) == 0
    single = _only_dir(tmp_path / "one")

    _run_two([*args, "--output-dir", str(tmp_path / "two")], tmp_path)
    _assert_same_run(single, _only_dir(tmp_path / "two"), 8)

    # kill rank 1 once its shard holds a finished sample; the launcher stops rank 0 too
    marker = uuid.uuid4().hex
    process = _launch([*args, "--output-dir", str(tmp_path / "killed")], tmp_path, marker)
    run_dir = RunDirectory(tmp_path / "killed" / single.name)
    shard = run_dir.shard(TASK, 1, 2)
    deadline = time.monotonic() + 300
    while not (shard.path.exists() and shard.path.read_bytes().count(b"\n") >= 1):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
        time.sleep(0.02)
    pid = _rank_pid(marker, 1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    out, _ = process.communicate(timeout=300)
    assert process.returncode != 0, out
    kept = {r["id"] for s in run_dir.shards(TASK) for r in s}
    assert 1 <= len(kept) < 8
    assert not run_dir.results_path.exists() or json.loads(run_dir.results_path.read_text())["status"] != "complete"

    out = _run_two([*args, "--output-dir", str(tmp_path / "killed")], tmp_path)
    assert f"generated {8 - len(kept)} requests" in out  # each rank resumed its own shard
    _assert_same_run(single, run_dir.path, 8)


def test_one_process_folds_in_shards_left_by_an_interrupted_parallel_run(tmp_path: Path, predictions: Path) -> None:
    args = ["--model", f"replay:{predictions}", "--tasks", TASK, "--limit", "8"]
    assert main(["run", *args, "--output-dir", str(tmp_path / "one")]) == 0
    single = _only_dir(tmp_path / "one")
    records = list(SampleLog(single / "samples" / f"{TASK}.jsonl"))
    ids = [s.id for s in Catalog().tasks[TASK].samples(8)]
    # what two ranks of an interrupted run left: rank 0 finished 2 samples, rank 1 one
    resumed = RunDirectory(tmp_path / "resumed" / single.name)
    for rank, index in ((0, 0), (0, 2), (1, 1)):
        log = resumed.shard(TASK, rank, 2)
        log.append(next(r for r in records if r["id"] == ids[index]))
        log.close()
    assert main(["run", *args, "--output-dir", str(tmp_path / "resumed")]) == 0
    assert not resumed.shards(TASK)
    merged = list(SampleLog(resumed.path / "samples" / f"{TASK}.jsonl"))
    assert sorted(r["id"] for r in merged) == sorted(ids)
    assert _untimed(json.loads(resumed.results_path.read_text())["tasks"]) == _untimed(json.loads(
        (single / "results.json").read_text())["tasks"])


def test_two_ranks_under_torchrun_equal_one_process(tmp_path: Path, predictions: Path) -> None:
    args = ["--model", f"replay:{predictions}", "--tasks", TASK, "--limit", "8"]
    assert main(["run", *args, "--output-dir", str(tmp_path / "one")]) == 0
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), "-m", "eval_anything", "run", *args, "--output-dir", str(tmp_path / "two")]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_same_run(_only_dir(tmp_path / "one"), _only_dir(tmp_path / "two"), 8)
