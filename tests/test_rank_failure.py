"""A data-parallel rank killed mid-run: the rank left waiting stops within the rank timeout, naming
the dead rank, and reruns (two ranks, and one process) resume to the results of a clean run.

The two ranks are started as plain processes with the launcher's environment (RANK, WORLD_SIZE,
MASTER_ADDR/PORT), as on two nodes: under one `torchrun` or `accelerate launch` the agent would stop
rank 0 itself once rank 1 died, which hides what rank 0 does on its own.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from servers import free_port
from stub_openai import StubServer, echo

from eval_anything.cli import main
from eval_anything.rundir import RunDirectory, SampleLog
from eval_anything.tasks import Catalog

TASK, LIMIT, RANK_TIMEOUT_S = "arith_mini", 8, 3


@pytest.fixture(scope="module")
def server() -> Iterator[StubServer]:
    with StubServer(echo(delay=0.1)) as stub:  # slow enough that rank 1 is killed with samples left
        yield stub


def _args(server: StubServer, output: Path) -> list[str]:
    return ["run", "--model", "openai:stub", "--model-args", f"base_url={server.base_url},concurrency=1",
            "--tasks", TASK, "--limit", str(LIMIT), "--rank-timeout", str(RANK_TIMEOUT_S), "--output-dir", str(output)]


def _launch_ranks(args: list[str], cwd: Path) -> list[subprocess.Popen]:
    port = free_port()
    ranks = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        ranks.append(subprocess.Popen([sys.executable, "-m", "eval_anything", *args], cwd=cwd, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return ranks


def _comparable(run_dir: Path) -> tuple[dict, dict]:
    records = {}
    for record in SampleLog(run_dir / "samples" / f"{TASK}.jsonl"):
        for output in record["outputs"]:
            output.pop("latency_s", None)  # wall time differs between runs
        records[record["id"]] = record
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "complete"
    task = results["tasks"][TASK]
    task["usage"] = {k: v for k, v in task.get("usage", {}).items() if k != "generation_s"}
    return records, task


def test_a_killed_rank_is_named_within_the_timeout_and_reruns_resume(tmp_path: Path, server: StubServer) -> None:
    assert main(_args(server, tmp_path / "clean")) == 0
    (clean,) = (tmp_path / "clean").iterdir()

    rank0, rank1 = _launch_ranks(_args(server, tmp_path / "killed"), tmp_path)
    shard = RunDirectory(tmp_path / "killed" / clean.name).shard(TASK, 1, 2)
    deadline = time.monotonic() + 120
    while not (shard.path.exists() and shard.path.read_bytes().count(b"\n") >= 1):
        assert rank1.poll() is None and time.monotonic() < deadline, rank1.communicate()[0]
        time.sleep(0.01)
    rank1.send_signal(signal.SIGKILL)
    rank1.wait()
    try:
        out, _ = rank0.communicate(timeout=RANK_TIMEOUT_S + 30)  # not 24 hours
    except subprocess.TimeoutExpired:
        rank0.kill()
        pytest.fail(f"rank 0 still waiting for the killed rank 1: {rank0.communicate()[0]}")
    out = " ".join(out.split())
    assert rank0.returncode != 0, out
    assert f"rank 1 of 2 (host {os.uname().nodename}, pid {rank1.pid})" in out, out
    killed = tmp_path / "killed" / clean.name
    left = {r["id"] for s in RunDirectory(killed).shards(TASK) for r in s}
    assert 1 <= len(left) < LIMIT

    resumed = {world: tmp_path / f"rerun{world}" / clean.name for world in (1, 2)}
    for path in resumed.values():
        shutil.copytree(killed, path)
    ranks = _launch_ranks(_args(server, resumed[2].parent), tmp_path)
    outs = [" ".join(r.communicate(timeout=120)[0].split()) for r in ranks]
    assert [r.returncode for r in ranks] == [0, 0], outs
    assert f"generated {LIMIT - len(left)} requests" in outs[0]  # each rank resumed its own shard
    assert main(_args(server, resumed[1].parent)) == 0

    expected = _comparable(clean)
    ids = [s.id for s in Catalog().tasks[TASK].samples(LIMIT)]
    for path in resumed.values():
        logged = [r["id"] for r in SampleLog(path / "samples" / f"{TASK}.jsonl")]
        assert sorted(logged) == sorted(ids)  # each once (one process appends what it generates after the shards)
        assert _comparable(path) == expected
        assert not RunDirectory(path).shards(TASK)


def test_a_rank_busy_with_its_share_notices_a_dead_one_without_waiting_for_a_barrier() -> None:
    """The heartbeat thread watches the other ranks all along: a rank that died is named by `check()`
    (called between samples) within the timeout, and one that left at the end of the run is not dead."""
    import torch.distributed as dist

    from eval_anything.rank_group import RankGroup, RankLostError

    host = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    client = dist.TCPStore("127.0.0.1", host.port, is_master=False)
    timeout = 0.5
    for session, ending in ((1, "dies"), (2, "leaves")):
        busy, other = RankGroup(host, 0, 2, timeout, session), RankGroup(client, 1, 2, timeout, session)
        other.leave() if ending == "leaves" else other._heartbeat.stop()  # killed: no beat, never left
        deadline = time.monotonic() + 3 * timeout  # stalled past the timeout within 1.4 timeouts
        while busy.lost is None and time.monotonic() < deadline:
            busy.check()  # nothing to raise yet
            time.sleep(0.05)
        if ending == "dies":
            with pytest.raises(RankLostError, match=rf"rank 1 of 2 \(host .*, pid {os.getpid()}\) sent no heartbeat "
                                                    r"for \d+ s while rank 0 was evaluating its share"):
                busy.check()
        else:
            assert busy.lost is None
        busy._heartbeat.stop()
