"""eval-anything against lm-evaluation-harness, side by side in one run: same model (the embedded
SmolLM2-135M-Instruct folder), same generate-until task over the same local data (same prompt,
chat template on both sides, stop at a newline), same batch size and generation length, greedy.

    python -m venv /tmp/lmeval-venv
    /tmp/lmeval-venv/bin/pip install 'lm_eval[hf]' torch==2.13.0 -c constraints.txt
    python benchmarks/vs_lm_eval.py --lm-eval-python /tmp/lmeval-venv/bin/python [--batch-size 8] [--rounds 1]
        [--items 64 | --items arith_mini] [--max-new-tokens 32]

The default data is the setup the goal was set on: 64 short one-step arithmetic questions, written
like arith_mini's (seeded, so both sides and every run get the same file), 32 new tokens, batch 8.
`--items arith_mini` takes the built-in task's 40 questions instead.

lm-eval runs in its own venv. Each side is one end-to-end subprocess (imports, model loading,
generation, scoring, writing results), timed from outside, rounds alternating. lm-eval scores
with `exact_match` after a regex filter that takes the last number of the answer; eval-anything
with its `numeric` scorer (last number, compared as a number). Prints both wall times (best
round), their ratio (goal <= 0.5) and both scores. Without lm-eval's venv only the eval-anything side
runs (`--batching static|continuous` picks the hf backend's batching; default: its default).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from timing import dated, markdown_table, timed  # benchmarks/timing.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
BUILTIN = ROOT / "eval_anything" / "tasks" / "builtin"
ARITH_MINI = BUILTIN / "data" / "arith_mini.jsonl"
TITLE = "Against lm-evaluation-harness"

LM_EVAL_TASK = """\
task: arith_mini_ea
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}} Answer with the number only."
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: {max_new_tokens}
  do_sample: false
filter_list:
  - name: last_number
    filter:
      - function: regex
        regex_pattern: "(-?[0-9][0-9,]*(?:\\\\.[0-9]+)?)"
        group_select: -1
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1
"""


def arithmetic_questions(path: Path, count: int, seed: int = 0) -> Path:
    """`count` one-step questions in arith_mini's form ("What is 36 - 29?"), the same for a given seed."""
    rng = random.Random(seed)
    operations = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
    rows = []
    for i in range(count):
        symbol = rng.choice(sorted(operations))
        a, b = (rng.randint(1, 50), rng.randint(1, 50)) if symbol != "*" else (rng.randint(2, 12), rng.randint(2, 12))
        rows.append({"id": f"arith-{i:03d}", "question": f"What is {a} {symbol} {b}?", "answer": str(operations[symbol](a, b))})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def eval_anything_task(work: Path, data: Path, max_new: int) -> Path:
    """arith_mini's task file (prompt, stop, scorer) over `data`."""
    task = yaml.safe_load((BUILTIN / "arith_mini.yaml").read_text())
    task.update(name="arith_bench", description="One-step arithmetic questions (+, -, *) answered with a number.",
                dataset={"path": str(data)})
    task["generation"]["max_new_tokens"] = max_new
    path = work / "arith_bench.yaml"
    path.write_text(yaml.safe_dump(task, sort_keys=False))
    return path


def lm_eval_side(python: str, model_dir: Path, work: Path, data: Path, batch: int, max_new: int,
                 env: dict) -> tuple[float, float]:
    tasks = work / "lm_eval_tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "arith_mini_ea.yaml").write_text(LM_EVAL_TASK.format(data=data, max_new_tokens=max_new))
    out = work / f"lm_eval_out_{time.monotonic_ns()}"
    command = [python, "-m", "lm_eval", "--model", "hf", "--model_args",
               f"pretrained={model_dir},dtype=float32", "--device", "cpu", "--tasks", "arith_mini_ea",
               "--include_path", str(tasks), "--batch_size", str(batch), "--apply_chat_template",
               "--output_path", str(out)]
    elapsed = timed(command, env)
    (result_file,) = out.rglob("results_*.json")
    result = json.loads(result_file.read_text())["results"]["arith_mini_ea"]
    return elapsed, result["exact_match,last_number"]


def eval_anything_side(model_dir: Path, work: Path, task: Path, batch: int, max_new: int, env: dict,
                       batching: str | None) -> tuple[float, float]:
    out = work / f"ea_out_{time.monotonic_ns()}"
    command = [sys.executable, "-m", "eval_anything", "run", "--model", f"hf:{model_dir}", "--tasks", str(task),
               "--batch-size", str(batch), "--max-new-tokens", str(max_new), "--output-dir", str(out)]
    if batching:
        command += ["--model-args", f"batching={batching}"]
    elapsed = timed(command, env)
    (run_dir,) = out.iterdir()
    result = json.loads((run_dir / "results.json").read_text())["tasks"]["arith_bench"]
    return elapsed, result["metrics"]["numeric"]["value"]


def results_table(stamp: str, items_flag: str, items: int, max_new_tokens: int, batch_size: int, threads: int,
                  batching: str | None, rounds: int, ea_times: list[float], ea_score: float,
                  lm_times: list[float], lm_score: float | None) -> tuple[list[str], list[list[str]]]:
    """docs/performance.md's columns (date and load, setup, measured) for one run of this script; `stamp` is
    the date and load (timing.dated()); `lm_times` is empty when lm-eval's venv was missing."""
    data = f"`arith_mini` ({items} items)" if items_flag == "arith_mini" else f"{items} generated questions"
    setup = (f"{data}, {max_new_tokens} new tokens, batch {batch_size}, "
             f"{threads} thread{'s' if threads != 1 else ''}"
             + (f", `batching={batching}`" if batching else ""))
    ea = min(ea_times)
    if lm_times:
        lm = min(lm_times)
        measured = (f"lm-eval {lm:.2f} s, eval-anything {ea:.2f} s: ratio {ea / lm:.2f}; "
                    f"scores {lm_score:.3f} and {ea_score:.3f}")
        when = ""
    else:
        measured = f"eval-anything {ea:.2f} s; score {ea_score:.3f}"
        when = ", eval-anything side only (no lm-eval venv)"
    when = f"{stamp}{when}, " + (f"best of {rounds}" if rounds > 1 else "1 round")
    return ["date, load", "setup", "measured"], [[when, setup, measured]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm-eval-python", default="/tmp/lmeval-venv/bin/python")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--items", default="64", help="how many generated questions, or arith_mini for its 40")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch threads on both sides")
    parser.add_argument("--batching", choices=("continuous", "static"), default=None,
                        help="the hf backend's batching (default: the backend's default)")
    args = parser.parse_args()
    with_lm_eval = Path(args.lm_eval_python).exists()
    if not with_lm_eval:
        print(f"no lm-eval venv at {args.lm_eval_python}: timing the eval-anything side only")

    from eval_anything.models.embedded import embedded_model_dir

    model_dir = embedded_model_dir()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    lm_times, ea_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = ARITH_MINI if args.items == "arith_mini" else arithmetic_questions(work / "arith.jsonl", int(args.items))
        items = len(data.read_text().splitlines())
        task = eval_anything_task(work, data, args.max_new_tokens)
        for _ in range(args.rounds):
            if with_lm_eval:
                seconds, lm_score = lm_eval_side(args.lm_eval_python, model_dir, work, data, args.batch_size,
                                                 args.max_new_tokens, env)
                lm_times.append(seconds)
            seconds, ea_score = eval_anything_side(model_dir, work, task, args.batch_size, args.max_new_tokens, env,
                                                   args.batching)
            ea_times.append(seconds)
    ea = min(ea_times)
    print(f"model {model_dir.name}, {data.stem} ({items} items), batch {args.batch_size}, {args.max_new_tokens} new tokens, "
          f"{args.threads} threads, batching {args.batching or 'default'}, best of {args.rounds}")
    print(f"eval-anything: {ea:7.2f} s  numeric {ea_score:.4f}")
    if with_lm_eval:
        lm = min(lm_times)
        print(f"lm-eval:       {lm:7.2f} s  exact_match (last number) {lm_score:.4f}")
        print(f"wall-time ratio eval-anything / lm-eval: {ea / lm:.2f} (goal <= 0.5)  ·  "
              f"scores equal: {lm_score == ea_score}")
    markdown_table(TITLE, *results_table(dated(), args.items, items, args.max_new_tokens, args.batch_size, args.threads,
                                         args.batching, args.rounds, ea_times, ea_score, lm_times,
                                         lm_score if with_lm_eval else None))


if __name__ == "__main__":
    main()
