"""Judge throughput: N judgements through the real judged-task path (replayed answers, a
`judge_rating` task, the `openai` judge backend, the judge engine, the run directory) against a
local OpenAI-compatible server that answers every request after a fixed latency.

    python benchmarks/judge_throughput.py [--n 256] [--latency 0.2] [--levels 1,8,32] [--rounds 1]
        [--rate 20] [--burst 20] [--lm-eval-python /tmp/lmeval-venv/bin/python]

The server runs in its own process. For each concurrency level prints wall time over the ideal (N x latency / concurrency).
Goal: <= 1.05 at every level. The judge cache is off so every judgement is a real call.

Then the level "rate-limited R/s": the same N judgements at the highest concurrency against a server
that admits `--rate` requests a second (a token bucket holding `--burst`, default one second's worth)
and answers the rest 429 with
retry-after-ms and Retry-After, as OpenAI does. Prints wall time over N / R and the failed
judgements. Goal: <= 1.15 with none failed.

With lm-eval's venv (`pip install 'lm_eval[api]' torch==2.13.0 -c constraints.txt` there), each level
also runs lm-evaluation-harness's API model (`local-chat-completions`, benchmarks/lm_eval_api_client.py)
against the same server, right after eval-anything, rounds alternating. lm-eval's side times its
`generate_until` alone; eval-anything's is the whole judged run (task, prompts, parsing, logs, summary).

Also printed: the harness process's CPU time per judgement (all threads). At concurrency C every
judgement's share of the harness's work must fit well inside latency / C, or replies queue for the GIL.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from stub_openai import StubServer, TokenBucket, completion, rate_limited  # noqa: E402
from timing import markdown_table, spread  # noqa: E402  benchmarks/timing.py, beside this script

from eval_anything.models import ModelSpec, resolve_spec  # noqa: E402
from eval_anything.runner import evaluate  # noqa: E402
from eval_anything.settings import JudgeSettings, RunSettings  # noqa: E402
from eval_anything.tasks import Catalog  # noqa: E402

TITLE = "Judge throughput"


def write_task(folder: Path, n: int) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"q{i:05d}", "question": f"Question {i}: what is {i} + {i}?", "answer": str(2 * i)} for i in range(n)]
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "judged.yaml").write_text(textwrap.dedent("""
        name: judged_bench
        version: 1
        dataset: {path: items.jsonl}
        input: [{text: question}]
        target: answer
        scorers: [judge_rating]
    """))
    predictions = folder / "predictions.jsonl"
    predictions.write_text("".join(json.dumps({"id": r["id"], "text": f"It is {r['answer']}."}) + "\n" for r in rows))
    return folder, predictions


def serve(latency: float, port_out: "multiprocessing.Queue", stats_in: "multiprocessing.Queue",
          stats_out: "multiprocessing.Queue", rate: float | None = None, burst: float = 1.0) -> None:
    """The judge server, in its own process so that it does not compete with the harness for the GIL;
    with `rate`, admitting that many requests a second (the rest: 429). Stats: calls, most in
    flight, 429s answered."""
    reply = lambda call, body, auth: (200, {}, completion("Explanation: fine.\nRating: [[7]]", 60, 8), latency)
    bucket = TokenBucket(rate, burst) if rate else None
    with StubServer(rate_limited(reply, bucket) if bucket else reply) as server:
        port_out.put(server.base_url)
        while stats_in.get() == "stats":
            stats_out.put((server.calls, server.max_in_flight, bucket.refused if bucket else 0))
            server.calls = server.max_in_flight = 0
            if bucket:
                bucket.refused = 0


def one_level(base_url: str, folder: Path, predictions: Path, concurrency: int) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of this process, judgements scored."""
    with tempfile.TemporaryDirectory() as output:
        spec = ModelSpec("openai", "bench-judge", {"base_url": base_url, "concurrency": concurrency})
        settings = RunSettings(output_dir=Path(output), judge=JudgeSettings(spec, cache_path=None))
        tasks = Catalog([folder]).resolve("judged_bench")
        started, cpu = time.perf_counter(), time.process_time()
        report = evaluate(resolve_spec(str(predictions)), tasks, settings)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        return elapsed, cpu, report.results["tasks"]["judged_bench"]["metrics"]["judge_rating"]["n"]


def rate_limited_level(args: argparse.Namespace, folder: Path, predictions: Path, concurrency: int
                       ) -> tuple[list[float], list[int]]:
    """`args.rounds` judged runs against a server admitting `args.rate` requests a second: wall time
    over N / R, and the judgements that failed, per round."""
    queues = [multiprocessing.Queue() for _ in range(3)]
    burst = args.burst or args.rate
    server = multiprocessing.Process(target=serve, args=(args.latency, *queues, args.rate, burst), daemon=True)
    server.start()
    ideal, ratios, failures = args.n / args.rate, [], []
    try:
        base_url = queues[0].get(timeout=30)
        for _ in range(args.rounds):
            time.sleep(burst / args.rate)  # the bucket refills between rounds
            elapsed, _, scored = one_level(base_url, folder, predictions, concurrency)
            queues[1].put("stats")
            calls, in_flight, refused = queues[2].get()
            ratios.append(elapsed / ideal)
            failures.append(args.n - scored)
            print(f"rate-limited {args.rate:g}/s (burst {burst:g}) at concurrency {concurrency}: {elapsed:7.2f} s wall, ideal "
                  f"{ideal:6.2f} s, ratio {elapsed / ideal:.3f}, failed judgements {args.n - scored} (calls {calls}, "
                  f"429s {refused}, most in flight {in_flight})")
    finally:
        queues[1].put("stop")
        server.join(timeout=10)
    return ratios, failures


def lm_eval_level(python: str, base_url: str, n: int, concurrency: int) -> tuple[float, int]:
    """Wall seconds of lm-eval's `generate_until` over n requests, and how many got a reply."""
    client = Path(__file__).resolve().parent / "lm_eval_api_client.py"
    command = [python, str(client), base_url, "--n", str(n), "--concurrency", str(concurrency)]
    line = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    measured = json.loads(line)
    return measured["wall_s"], measured["answered"]


def compare_level(base_url: str, folder: Path, predictions: Path, level: int, args: argparse.Namespace,
                  stats: list["multiprocessing.Queue"], with_lm_eval: bool) -> tuple[list[float], list[float]]:
    """`args.rounds` runs at one concurrency, each followed by lm-eval's where it is installed; prints each
    run's ratio and, over several, the medians. Returns the ratios of both sides (lm-eval's empty without it)."""
    ideal = args.n * args.latency / level
    ours, theirs = [], []
    for _ in range(args.rounds):
        elapsed, cpu, scored = one_level(base_url, folder, predictions, level)
        stats[0].put("stats")
        calls, in_flight, _ = stats[1].get()
        ours.append(elapsed / ideal)
        print(f"concurrency {level:>3}: {elapsed:7.2f} s wall, ideal {ideal:6.2f} s, "
              f"ratio {elapsed / ideal:.3f} (scored {scored}, calls {calls}, most in flight {in_flight}, "
              f"harness CPU {cpu / args.n * 1000:.2f} ms per judgement)")
        if with_lm_eval:
            elapsed, answered = lm_eval_level(args.lm_eval_python, base_url, args.n, level)
            stats[0].put("stats"), stats[1].get()  # the next count is eval-anything's alone
            theirs.append(elapsed / ideal)
            print(f"    lm-eval API model, same server: {elapsed:7.2f} s wall, ratio {elapsed / ideal:.3f} "
                  f"(answered {answered})")
    if args.rounds > 1 or with_lm_eval:
        side_by_side = f", lm-eval {statistics.median(theirs):.3f}" if theirs else ""
        print(f"concurrency {level:>3}: median ratio eval-anything {statistics.median(ours):.3f}{side_by_side}")
    return ours, theirs


def lm_eval_version(python: str) -> str:
    """lm-eval's version in its venv ('' when it cannot be read)."""
    done = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('lm_eval'))"],
                          capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def results_table(ratios: dict[int, tuple[list[float], list[float]]], rounds: int, lm_eval: str | None,
                  limited: tuple[str, list[float], list[int]] | None = None) -> tuple[list[str], list[list[str]]]:
    """docs/performance.md's columns, one per concurrency level: wall time over the ideal, the median of the
    rounds with their range when there are several. `ratios` maps a level to (eval-anything's, lm-eval's);
    `lm_eval` is lm-eval's version, None when it did not run."""
    def cell(values: list[float]) -> str:
        middle, low_high = f"{statistics.median(values):.3f}", spread(values, "{:.3f}")
        return middle if low_high == middle else f"{middle} ({low_high})"

    how = f"medians of {rounds} rounds" if rounds > 1 else "1 round"
    rows = [[f"eval-anything, whole judged run ({how})", *(cell(ours) for ours, _ in ratios.values())]]
    if lm_eval is not None:
        rows.append([f"lm-eval {lm_eval} API model, `generate_until` only, same server, same rounds".replace("  ", " "),
                     *(cell(theirs) for _, theirs in ratios.values())])
    columns = ["concurrency", *(str(level) for level in ratios)]
    if limited is not None:  # its own column: wall over N / R at the highest level, and the failed judgements
        label, limited_ratios, failed = limited
        columns.append(f"{label} (at {list(ratios)[-1]}): wall / (N/R), failed judgements")
        rows = [[*row, ""] for row in rows]
        rows[0][-1] = f"{cell(limited_ratios)}, {max(failed)} failed"
    return columns, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=1, help="runs per level and side; medians are printed")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="requests a second the rate-limited server admits (0: skip that level)")
    parser.add_argument("--burst", type=float, default=None,
                        help="requests the rate-limited server admits at once (default: --rate, one second's worth)")
    parser.add_argument("--lm-eval-python", default="/tmp/lmeval-venv/bin/python",
                        help="lm-eval's venv Python; the lm-eval side is skipped when it does not exist")
    args = parser.parse_args()
    with_lm_eval = Path(args.lm_eval_python).exists()
    if not with_lm_eval:
        print(f"no lm-eval venv at {args.lm_eval_python}: timing the eval-anything side only")
    queues = [multiprocessing.Queue() for _ in range(3)]
    server = multiprocessing.Process(target=serve, args=(args.latency, *queues), daemon=True)
    server.start()
    base_url = queues[0].get(timeout=30)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            one_level(base_url, *write_task(Path(tmp) / "warm", 4), 4)  # imports, first connections
            folder, predictions = write_task(Path(tmp) / "bench", args.n)
            queues[1].put("stats"), queues[2].get()
            print(f"{args.n} judgements, {args.latency:.3f} s per request, server in its own process")
            ratios = {level: compare_level(base_url, folder, predictions, level, args, queues[1:], with_lm_eval)
                      for level in (int(x) for x in args.levels.split(","))}
            queues[1].put("stop")
            server.join(timeout=10)
            label = f"rate-limited {args.rate:g}/s, burst {args.burst or args.rate:g}"
            limited = (label, *rate_limited_level(args, folder, predictions, max(ratios))) if args.rate else None
    finally:
        queues[1].put("stop")
        server.join(timeout=10)
    markdown_table(TITLE, *results_table(ratios, args.rounds,
                                         lm_eval_version(args.lm_eval_python) if with_lm_eval else None, limited))


if __name__ == "__main__":
    main()
