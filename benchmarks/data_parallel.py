"""Data-parallel speed-up: the same run in 1 process and in N processes under `accelerate launch`.

    python benchmarks/data_parallel.py [--processes 2] [--tasks arith_mini] [--limit N] [--batch-size 1]
                                       [--threads 1]

Both sides are the same `eval-anything run` command (embedded SmolLM2 by default) into fresh
output folders, each timed end to end as a subprocess (start-up and model loading included), with
`--threads` torch threads per process. Without a GPU the N processes are CPU ranks on gloo
(`ACCELERATE_USE_CPU=true accelerate launch --multi_gpu`); on a GPU machine pass `--gpu` and
they are one GPU each. Prints both wall times, the speed-up and whether the scores are equal.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import markdown_table, timed  # benchmarks/timing.py, beside this script

TITLE = "Data-parallel speed-up"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metrics(output_dir: Path) -> dict:
    (run_dir,) = output_dir.iterdir()
    tasks = json.loads((run_dir / "results.json").read_text())["tasks"]
    return {name: {m: v["value"] for m, v in t.get("metrics", {}).items()} for name, t in tasks.items()}


def results_table(processes: int, single: float, parallel: float, one: dict, many: dict
                  ) -> tuple[list[str], list[list[str]]]:
    """The figures docs/performance.md gives for this benchmark (in prose there): each side's wall time, the
    speed-up, and its scores (`metrics()` of its output folder), whether they are equal."""
    def scores(found: dict) -> str:
        return "; ".join(f"{task} {metric} {value:.3f}" if isinstance(value, float) else f"{task} {metric} {value}"
                         for task, values in found.items() for metric, value in values.items()) or "—"

    equal = "equal" if one == many else "differ"
    return (["", "wall time", "speed-up", "scores"],
            [["1 process", f"{single:.2f} s", "1", scores(one)],
             [f"{processes} processes (`accelerate launch`)", f"{parallel:.2f} s", f"{single / parallel:.2f}×",
              f"{scores(many)} ({equal})"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--tasks", default="arith_mini")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--batch-size", default="1")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per rank instead of CPU ranks")
    args = parser.parse_args()

    run = ["-m", "eval_anything", "run", "--model", args.model, "--tasks", args.tasks, "--batch-size", args.batch_size]
    if args.limit:
        run += ["--limit", str(args.limit)]
    if args.gpu:
        run += ["--model-args", "device=cuda"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    parallel_env = dict(env) if args.gpu else {**env, "ACCELERATE_USE_CPU": "true"}
    subprocess.run([sys.executable, "-c", "from eval_anything.models.embedded import embedded_model_dir as d; d()"],
                   env=env, check=True)  # convert the embedded model once, outside the timings
    with tempfile.TemporaryDirectory() as tmp:
        one, many = Path(tmp) / "one", Path(tmp) / "many"
        single = timed([sys.executable, *run, "--output-dir", str(one)], env)
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                  str(args.processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                  "--main_process_port", str(_free_port())]
        parallel = timed([*launch, *run, "--output-dir", str(many)], parallel_env)
        same = metrics(one) == metrics(many)
        print(f"1 process:           {single:7.2f} s  {metrics(one)}")
        print(f"{args.processes} processes (accelerate): {parallel:7.2f} s  {metrics(many)}")
        print(f"speed-up: {single / parallel:.2f}x  ·  scores equal: {same}")
        markdown_table(TITLE, *results_table(args.processes, single, parallel, metrics(one), metrics(many)))


if __name__ == "__main__":
    main()
