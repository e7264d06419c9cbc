"""The faults real runs meet, as a user meets them: a second process on the run directory, a full
disk, SIGTERM/SIGINT, an internal error. The model is a local OpenAI-compatible stub that answers
arith_mini like a calculator that is wrong on a third of the items, slowly enough to be caught mid-run."""
import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock

from eval_anything.cli import main
from eval_anything.console import exit_code_of
from eval_anything.errors import EXIT_BUSY, EXIT_CANNOT_WRITE, Interrupted, RunDirectoryBusy, UsageError
from eval_anything.interrupts import graceful_stop
from eval_anything.locking import HOLDER_SUFFIX, LOCK, run_directory_lock
from eval_anything.rundir import normal_file_mode
from stub_openai import StubServer, completion, user_text

ITEMS = 40
PACE = {"delay_s": 0.04}
"""Seconds the stub takes per request: 40 sequential requests take about 1.6 s, time enough to be
stopped or joined mid-run; in-process runs set it to 0."""


def calculator(call, body, auth):
    a, op, b = re.search(r"What is (\d+) ([-+*]) (\d+)\?", user_text(body)).groups()
    value = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
    return 200, {}, completion(str(value if int(a) % 3 else value + 1)), PACE["delay_s"]


@pytest.fixture(scope="module")
def stub():
    with StubServer(calculator) as server:
        yield server


def run_argv(stub, output_dir, *extra):
    return ["run", "--tasks", "arith_mini", "--model", "openai:stub", "--model-args",
            f"base_url={stub.base_url},concurrency=1", "--output-dir", str(output_dir), *extra]


ENV = {**os.environ, "OPENAI_API_KEY": "sk-test", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


def start(stub, output_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "eval_anything", *run_argv(stub, output_dir, *extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def finish(process, timeout=120):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, " ".join(out.split()), err


def only_run_dir(output_dir):
    (run_dir,) = [p for p in Path(output_dir).iterdir() if p.is_dir()]
    return run_dir


def lines(run_dir):
    raw = (run_dir / "samples" / "arith_mini.jsonl").read_bytes()
    assert not raw or raw.endswith(b"\n"), "a torn last line"
    return [json.loads(line) for line in raw.splitlines()]


def task_result(run_dir):
    task = json.loads((run_dir / "results.json").read_text())["tasks"]["arith_mini"]
    return {k: v for k, v in task.items() if k != "usage"}  # latencies differ from run to run


def outputs(run_dir):
    return {r["id"]: r["outputs"][0]["text"] for r in lines(run_dir)}


def status(run_dir, name):
    return json.loads((run_dir / name).read_text())["status"]


def wait_for(condition, process, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended first: {process.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def logged(output_dir):
    logs = list(Path(output_dir).glob("*/samples/arith_mini.jsonl"))
    return len(logs[0].read_bytes().splitlines()) if logs else 0


@pytest.fixture(scope="module")
def clean(stub, tmp_path_factory):
    """A run no fault touched: what every faulted run must end equal to."""
    output_dir = tmp_path_factory.mktemp("clean")
    PACE["delay_s"], delay = 0.0, PACE["delay_s"]
    try:
        assert main(run_argv(stub, output_dir)) == 0
    finally:
        PACE["delay_s"] = delay
    run_dir = only_run_dir(output_dir)
    assert len(lines(run_dir)) == ITEMS
    return run_dir


def assert_equal_to_clean(run_dir, clean):
    ids = [r["id"] for r in lines(run_dir)]
    assert len(ids) == len(set(ids)) == ITEMS
    assert outputs(run_dir) == outputs(clean)
    assert task_result(run_dir) == task_result(clean)
    assert status(run_dir, "manifest.json") == status(run_dir, "results.json") == "complete"


def test_a_second_process_waits_for_the_first_and_reuses_its_samples(stub, clean, tmp_path):
    first = start(stub, tmp_path)
    wait_for(lambda: list(tmp_path.glob(f"*/{LOCK}{HOLDER_SUFFIX}")), first)
    second = start(stub, tmp_path)
    busy = subprocess.run([sys.executable, "-m", "eval_anything", *run_argv(stub, tmp_path, "--no-wait")],
                          capture_output=True, text=True, env=ENV, timeout=60)
    first_code, first_out, _ = finish(first)
    second_code, second_out, second_err = finish(second)

    assert busy.returncode == EXIT_BUSY and f"in use by pid {first.pid} on " in busy.stderr
    assert len(busy.stderr.strip().splitlines()) == 1, busy.stderr
    assert (first_code, second_code) == (0, 0), second_err
    assert f"in use by pid {first.pid}" in second_err and "waiting" in second_err
    assert "generated 40 requests" in first_out and "generated 0 requests" in second_out
    run_dir = only_run_dir(tmp_path)
    assert_equal_to_clean(run_dir, clean)
    assert not (run_dir / f"{LOCK}{HOLDER_SUFFIX}").exists()


def test_a_lock_left_by_a_dead_process_is_taken_its_holder_file_never_named_and_ranks_lock_apart(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    side = tmp_path / f"{LOCK}{HOLDER_SUFFIX}"
    stale = json.dumps({"pid": dead.pid, "host": os.uname().nodename, "since": "2026-01-01T00:00:00+00:00"})
    side.write_text(stale)
    with run_directory_lock(tmp_path, wait=False):  # its flock died with it: taken at once
        assert json.loads(side.read_text())["pid"] == os.getpid()
    assert not side.exists()

    side.write_text(stale)
    with FileLock(tmp_path / LOCK):  # held by someone who has not yet rewritten the holder file
        with pytest.raises(RunDirectoryBusy, match="in use by another process") as busy:
            with run_directory_lock(tmp_path, wait=False):
                pass
    assert str(dead.pid) not in str(busy.value)

    # data-parallel: rank 1 of a second launch of the same job cannot take rank 1's shard lock,
    # and holds nobody else's
    with run_directory_lock(tmp_path, wait=False, rank=1):
        with pytest.raises(RunDirectoryBusy, match=f"in use by pid {os.getpid()} on "):
            with run_directory_lock(tmp_path, wait=False, rank=1):
                pass
        with run_directory_lock(tmp_path, wait=False, rank=0), run_directory_lock(tmp_path, wait=False, rank=2):
            pass


def test_sigterm_and_sigint_stop_gracefully_and_the_rerun_completes(stub, clean, tmp_path):
    for number, code, stopped_after in ((signal.SIGTERM, 143, 3), (signal.SIGINT, 130, 12)):
        process = start(stub, tmp_path)
        wait_for(lambda: logged(tmp_path) >= stopped_after, process)
        sent = time.monotonic()
        process.send_signal(number)
        exit_code, _, err = finish(process, timeout=30)
        assert time.monotonic() - sent < 5, err
        assert exit_code == code, err
        assert f"stopped by {signal.Signals(number).name}" in err and "Traceback" not in err
        run_dir = only_run_dir(tmp_path)
        assert status(run_dir, "manifest.json") == "interrupted"
        assert stopped_after <= len(lines(run_dir)) < ITEMS  # every line whole

    done = len(lines(run_dir))
    rerun_code, rerun_out, err = finish(start(stub, tmp_path))
    assert rerun_code == 0, err
    assert f"generated {ITEMS - done} requests, resumed {done} finished samples" in rerun_out
    assert_equal_to_clean(run_dir, clean)


def test_a_second_signal_exits_at_once(monkeypatch):
    def exit_now(code):
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", exit_now)
    with graceful_stop():
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        with pytest.raises(SystemExit) as second:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert second.value.code == 143


def test_a_full_tmpfs_ends_the_run_with_one_line_and_a_roomy_rerun_resumes(stub, clean, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        exit_code, _, err = finish(start(stub, small), timeout=60)
        roomy = tmp_path / "roomy"
        shutil.copytree(small, roomy)
    finally:
        subprocess.run(["umount", str(small)], check=True)
    message = err.strip().splitlines()[-1]
    assert exit_code == EXIT_CANNOT_WRITE and "Traceback" not in err, err
    assert re.search(r"cannot write \S+/samples/arith_mini\.jsonl: No space left on device \(ENOSPC\) -> free space",
                     message), message

    rerun_code, rerun_out, err = finish(start(stub, roomy))
    assert rerun_code == 0 and "resumed" in rerun_out, err
    assert_equal_to_clean(only_run_dir(roomy), clean)


def failing_on_call(k, real):
    calls = []

    def fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == k:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    return fail


def test_no_space_at_random_points_is_one_line_no_thread_left_and_the_rerun_equals_a_clean_run(
        stub, clean, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(PACE, "delay_s", 0.0)
    threads_before = set(threading.enumerate())
    rng = random.Random(18)
    for trial, (name, k) in enumerate([("fsync", rng.randint(1, 6)), ("replace", rng.randint(1, 3)),
                                       ("fsync", rng.randint(7, 12))]):
        output_dir = tmp_path / str(trial)
        with monkeypatch.context() as patch:
            patch.setattr(os, name, failing_on_call(k, getattr(os, name)))
            assert main(run_argv(stub, output_dir)) == EXIT_CANNOT_WRITE, (name, k)
        err = capsys.readouterr().err
        assert "Traceback" not in err and "No space left on device (ENOSPC)" in err, err
        assert re.search(rf"cannot write {re.escape(str(output_dir))}/\S+: No space", err), err
        left = [t for t in threading.enumerate() if t not in threads_before and "process_request" not in t.name]
        assert not left  # the stub server's own request threads aside

        assert main(run_argv(stub, output_dir)) == 0
        run_dir = only_run_dir(output_dir)
        assert_equal_to_clean(run_dir, clean)
        for name_ in ("results.json", "manifest.json", "samples/arith_mini.jsonl"):
            assert (run_dir / name_).stat().st_mode & 0o777 == normal_file_mode(), name_


def test_a_corrupt_judge_cache_is_named_with_the_way_out(tmp_path, capsys):
    from chaos import Chaos, Stub, write_task

    corrupt = tmp_path / "judge-cache.sqlite"
    corrupt.write_bytes(b"not a database, " * 512)
    with Stub() as stub:
        argv = Chaos(stub, write_task(tmp_path / "tasks", items=2), tmp_path / "out", items=2).argv()
        argv[argv.index("--judge-cache") + 1] = str(corrupt)
        assert main(argv) == EXIT_CANNOT_WRITE
        assert stub.server.calls == 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(corrupt) in err and "--judge-cache off" in err, err


def test_user_errors_are_one_line_and_bugs_show_their_traceback(capsys):
    def user():
        raise UsageError("--judge-price takes IN,OUT")

    def bug():
        return {}["missing"]

    assert exit_code_of(user) == 2
    assert capsys.readouterr().err == "eval-anything: error: --judge-price takes IN,OUT\n"
    assert exit_code_of(bug) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'missing'" in err and "this is a bug" in err and "please report" in err
    assert main(["run", "--repeats", "0", "--tasks", "arith_mini"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_failed_command_never_waits_forever_on_a_thread_left_running():
    code = ("import threading, time\n"
            "from eval_anything import cli\n"
            "def failing():\n"
            "    threading.Thread(target=time.sleep, args=(600,), name='left-running').start()\n"
            "    return 74\n"
            "cli.main, cli.STRAY_THREAD_GRACE_S = failing, 0.2\n"
            "cli.entry()\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=ENV)
    assert done.returncode == 74 and time.monotonic() - started < 30
    assert "left-running still running at exit" in done.stderr and "This is a bug" in done.stderr
