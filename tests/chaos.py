"""Random faults against one judged run, then the same command: there must be one run directory,
every sample once, and results equal to a run no fault touched. Used by tests/test_chaos.py (a few
rounds) and benchmarks/chaos.py (many).

The model and the judge are one local OpenAI-compatible stub: the model answers arithmetic like a
calculator that is wrong on a third of the items, the judge rates by the question alone. Each round
makes one side slow, so that the fault lands while samples are generated or while they are judged.
Faults are entries of FAULTS (name -> function of a Round)."""
from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from stub_openai import StubServer, completion, too_many_requests, user_text

TASK = "chaos_arith"
KEY_ENV = "EVAL_ANYTHING_CHAOS_KEY"
SLOW_S = 0.03
"""Seconds per request of the slow side of a round."""
EXIT_CANNOT_WRITE, SIGTERM_EXIT = 74, 143
RANK_TIMEOUT_S = 3
"""--rank-timeout of every command: how soon a rank notices a dead one."""
ENOSPC_WRAPPER = textwrap.dedent("""
    import errno, os, sys
    fail_at, real, calls = int(sys.argv.pop(1)), os.fsync, [0]
    def fsync(fd):
        calls[0] += 1
        if calls[0] == fail_at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)
    os.fsync = fsync
    from eval_anything.cli import entry
    sys.argv[0] = "eval-anything"
    entry()
""")
"""The real command with its k-th fsync failing as on a full disk."""


@dataclass
class Throttle:
    """While set, a `share` of one side's requests are answered 429 with a Retry-After drawn from `wait_s`."""

    side: str
    share: float
    wait_s: tuple[float, float]
    rng: random.Random
    refused: int = 0

    def refuses(self, side: str) -> float | None:
        """The Retry-After of a refusal, or None: the request is answered."""
        if side != self.side or self.rng.random() >= self.share:
            return None
        self.refused += 1
        return self.rng.uniform(*self.wait_s)


class Stub:
    """Model and judge on one server; `pace` says how slow each side is, `throttle` whether one
    side is rate-limited."""

    def __init__(self) -> None:
        self.pace = {"model": 0.0, "judge": 0.0}
        self.throttle: Throttle | None = None
        self.server = StubServer(self.reply)

    def reply(self, call: int, body: dict[str, Any], auth: str):
        side = "judge" if body["model"] == "chaos-judge" else "model"
        wait = self.throttle.refuses(side) if self.throttle else None
        if wait is not None:
            return too_many_requests(wait)
        a, op, b = (int(x) if x.isdigit() else x
                    for x in re.search(r"What is (\d+) ([-+*]) (\d+)\?", user_text(body)).groups())
        if side == "judge":
            return 200, {}, completion(f"Explanation: fine.\nRating: [[{1 + (a + b) % 10}]]"), self.pace["judge"]
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        return 200, {}, completion(str(value if a % 3 else value + 1)), self.pace["model"]

    def __enter__(self) -> "Stub":
        self.server.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.__exit__(*exc)


def write_task(folder: Path, items: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"c{i:03d}", "question": f"What is {i} + {2 * i + 1}?", "answer": str(3 * i + 1)}
            for i in range(items)]
    (folder / f"{TASK}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / f"{TASK}.yaml").write_text(textwrap.dedent(f"""
        name: {TASK}
        version: 1
        dataset: {{path: {TASK}.jsonl}}
        input: [{{text: question}}]
        target: answer
        generation: {{max_new_tokens: 8}}
        scorers: [judge_rating, numeric]
    """))
    return folder


@dataclass
class Chaos:
    """One chaos experiment: its stub, task and folders."""

    stub: Stub
    tasks: Path
    output_dir: Path
    items: int
    log: list[dict[str, Any]] = field(default_factory=list)
    """What each round did: fault, phase, samples logged before and after, exit codes."""

    def argv(self, output_dir: Path | None = None) -> list[str]:
        output = output_dir or self.output_dir
        url = self.stub.server.base_url
        return ["run", "--tasks", TASK, "--include-path", str(self.tasks),
                "--model", "openai:chaos-model", "--model-args", f"base_url={url},api_key_env={KEY_ENV},concurrency=1",
                "--judge", "openai:chaos-judge", "--judge-args", f"base_url={url},api_key_env={KEY_ENV},concurrency=2",
                "--judge-cache", str(output.parent / f"{output.name}-judge-cache.sqlite"), "--output-dir", str(output),
                "--rank-timeout", str(RANK_TIMEOUT_S)]

    def env(self) -> dict[str, str]:
        root = str(Path(__file__).resolve().parent.parent)
        return {**os.environ, KEY_ENV: "sk-chaos-NOT-REAL", "PYTHONPATH": root}

    def start(self, *prefix: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        command = [sys.executable, *(prefix or ("-m", "eval_anything")), *self.argv()]
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**self.env(), **(env or {})})

    def launch(self, world: int) -> list[subprocess.Popen]:
        """The command as `world` data-parallel ranks, started as plain processes with a launcher's
        environment (as on `world` nodes: one torchrun agent would stop the others itself)."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return [self.start(env={"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(world),
                                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}) for r in range(world)]

    def logged(self) -> int:
        count = 0
        for path in self.output_dir.glob(f"*/samples/{TASK}*.jsonl"):
            with contextlib.suppress(FileNotFoundError):  # a shard folded into the log meanwhile
                count += len(path.read_bytes().splitlines())
        return count

    def wait_logged(self, process: subprocess.Popen, count: int, timeout: float = 60) -> bool:
        """Whether `count` samples are logged while `process` still runs."""
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            if self.logged() >= count:
                return True
            time.sleep(0.01)
        return False


@dataclass
class Round:
    chaos: Chaos
    rng: random.Random
    phase: str = "generation"

    def target(self) -> int | None:
        """How many samples to let finish before the fault: a few more than now; None when too few
        are left for a fault to land among them (the round then runs to the end)."""
        now = self.chaos.logged()
        if now >= self.chaos.items - 1:
            return None
        return min(self.chaos.items - 1, now + self.rng.randint(1, 3))


def _signal(number: int, expected: int) -> Callable[[Round], dict[str, Any]]:
    def fault(round_: Round) -> dict[str, Any]:
        target = round_.target()
        process = round_.chaos.start()
        caught = target is not None and round_.chaos.wait_logged(process, target)
        if caught:
            process.send_signal(number)
        out, err = process.communicate(timeout=60)
        allowed = {expected, 0} if not caught else {expected}
        assert process.returncode in allowed, (process.returncode, err[-2000:])
        return {"exit": process.returncode}

    return fault


def _no_space(round_: Round) -> dict[str, Any]:
    fail_at = round_.rng.randint(1, 8)
    process = round_.chaos.start("-c", ENOSPC_WRAPPER, str(fail_at))
    out, err = process.communicate(timeout=60)
    assert process.returncode in (EXIT_CANNOT_WRITE, 0), (process.returncode, err[-2000:])
    if process.returncode == EXIT_CANNOT_WRITE:
        message = err.strip().splitlines()[-1]
        assert "Traceback" not in err and "No space left on device (ENOSPC)" in message, err[-2000:]
    return {"exit": process.returncode, "fsync": fail_at}


def _second_process(round_: Round) -> dict[str, Any]:
    """A second process on the run directory while the first runs; the first is killed, the
    second takes its lock over and is killed in turn a few samples later."""
    chaos = round_.chaos
    first = chaos.start()
    holder = lambda: list(chaos.output_dir.glob("*/.lock.holder"))  # noqa: E731
    deadline = time.monotonic() + 60
    while not holder() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    second = chaos.start()
    target = round_.target()
    if target is not None and chaos.wait_logged(first, target):
        first.kill()
    first.communicate(timeout=60)
    target = round_.target()
    if target is not None and chaos.wait_logged(second, target):
        second.kill()
    _, err = second.communicate(timeout=60)
    assert second.returncode in (0, -signal.SIGKILL), err[-2000:]
    return {"exit": (first.returncode, second.returncode)}


def _rate_limited(round_: Round) -> dict[str, Any]:
    """From a few samples in, for a few samples, the slow side (the model while generating, the
    judge while judging) refuses a random share of requests with a random Retry-After. The run goes
    on through it; a sample after, it is killed, so that later rounds have samples left to land on
    (a run that finishes first must exit 0)."""
    chaos, rng = round_.chaos, round_.rng
    process = chaos.start()
    throttle = Throttle("model" if round_.phase == "generation" else "judge", share=rng.uniform(0.3, 0.7),
                        wait_s=(0.005, 0.1), rng=rng)
    try:
        for step in ("throttle", "answer", "kill"):
            target = round_.target()
            if target is None or not chaos.wait_logged(process, target):
                break
            chaos.stub.throttle = throttle if step == "throttle" else None
            if step == "kill":
                process.kill()
        _, err = process.communicate(timeout=120)
    finally:
        chaos.stub.throttle = None
    assert process.returncode in (0, -signal.SIGKILL), (process.returncode, err[-2000:])
    return {"exit": process.returncode, "429s": throttle.refused}


def _dead_rank(round_: Round) -> dict[str, Any]:
    """The command as two ranks; a few samples in, one of them is SIGKILLed: the other must exit
    non-zero, naming it. It notices when it next waits for the dead one (it finishes its own shard
    first), within the rank timeout from then."""
    chaos, rng = round_.chaos, round_.rng
    ranks = chaos.launch(2)
    target, killed = round_.target(), None
    if target is not None and all(chaos.wait_logged(r, target) for r in ranks[:1]) and \
            all(r.poll() is None for r in ranks):
        killed = rng.randrange(2)
        ranks[killed].kill()
    killed_at = time.monotonic()
    other = ranks[1 - killed] if killed is not None else ranks[0]
    try:
        _, err = other.communicate(timeout=RANK_TIMEOUT_S + 60)
        noticed_s = time.monotonic() - killed_at
    finally:
        for rank in ranks:
            if rank.poll() is None:
                rank.kill()
            rank.communicate()
    if killed is None:
        assert all(r.returncode == 0 for r in ranks), [r.returncode for r in ranks]
        return {"exit": tuple(r.returncode for r in ranks)}
    assert other.returncode not in (0, -signal.SIGKILL), (other.returncode, err[-2000:])
    line = err.strip().splitlines()[-2]  # the error; then "rerun the same command"
    assert f"rank {killed}" in line and f"pid {ranks[killed].pid}" in line, err[-2000:]
    return {"exit": tuple(r.returncode for r in ranks), "killed rank": killed, "noticed_s": noticed_s}


FAULTS: dict[str, Callable[[Round], dict[str, Any]]] = {
    "sigkill": _signal(signal.SIGKILL, -signal.SIGKILL),
    "sigterm": _signal(signal.SIGTERM, SIGTERM_EXIT),
    "enospc": _no_space,
    "second process": _second_process,
    "429": _rate_limited,
    "dead rank": _dead_rank,
}
PHASES = ("generation", "judging")
LAST = {"dead rank"}
"""Faults that use up a shard (the other rank finishes its own before it notices): they come after
the others, so that those have samples left to land on."""


def run_chaos(chaos: Chaos, rounds: int, seed: int, kinds: list[str] | None = None) -> list[dict[str, Any]]:
    """`rounds` random faults of `kinds` (default: every kind of FAULTS; each once before any
    repeats, each in a random phase, those of LAST last), then the same command to the end. Returns
    what each round did."""
    rng = random.Random(seed)
    kinds = list(kinds or FAULTS)
    rng.shuffle(kinds)
    plan = (kinds * (rounds // len(kinds) + 1))[:rounds]
    plan.sort(key=lambda kind: kind in LAST)  # stable: the others keep their random order
    for number, name in enumerate(plan):
        phase = rng.choice(PHASES)
        chaos.stub.pace.update(model=SLOW_S if phase == "generation" else 0.0,
                               judge=SLOW_S if phase == "judging" else 0.0)
        before = chaos.logged()
        outcome = FAULTS[name](Round(chaos, rng, phase))
        chaos.log.append({"round": number + 1, "fault": name, "phase": phase, "before": before,
                          "after": chaos.logged(), **outcome})
    chaos.stub.pace.update(model=0.0, judge=0.0)
    final = subprocess.run([sys.executable, "-m", "eval_anything", *chaos.argv()], capture_output=True, text=True,
                           env=chaos.env(), timeout=120)
    assert final.returncode == 0, final.stderr[-3000:]
    return chaos.log


def clean_run(chaos: Chaos, output_dir: Path) -> Path:
    chaos.stub.pace.update(model=0.0, judge=0.0)
    done = subprocess.run([sys.executable, "-m", "eval_anything", *chaos.argv(output_dir)], capture_output=True,
                          text=True, env=chaos.env(), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return only_run_dir(output_dir)


def only_run_dir(output_dir: Path) -> Path:
    dirs = [p for p in Path(output_dir).iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def samples(run_dir: Path) -> list[dict[str, Any]]:
    raw = (run_dir / "samples" / f"{TASK}.jsonl").read_bytes()
    assert raw.endswith(b"\n"), "a torn last line"
    return [json.loads(line) for line in raw.splitlines()]


def comparable(run_dir: Path) -> dict[str, Any]:
    """What must not depend on the faults: each sample's answer and scores, the task's metrics, the
    run's status (latencies, token counts and judge-cache hits do)."""
    by_id = {r["id"]: (r["outputs"][0]["text"], {k: s.get("value") for k, s in r["scores"].items()})
             for r in samples(run_dir)}
    results = json.loads((run_dir / "results.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {"samples": by_id, "metrics": _rounded(results["tasks"][TASK]["metrics"]),
            "status": (results["status"], manifest["status"])}


def _rounded(value: Any) -> Any:
    """Floats to 12 significant digits: a sum over the samples in another order (a log that a
    data-parallel run's shards were folded into, then appended to) differs in the last bit."""
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return float(f"{value:.12g}") if isinstance(value, float) else value


def check(chaos: Chaos, clean: Path) -> None:
    """One run directory, every sample once, equal to the clean run."""
    run_dir = only_run_dir(chaos.output_dir)
    ids = [r["id"] for r in samples(run_dir)]
    assert len(ids) == len(set(ids)) == chaos.items, (len(ids), len(set(ids)))
    assert comparable(run_dir) == comparable(clean)
