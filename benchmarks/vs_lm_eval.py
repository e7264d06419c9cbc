"""eval-anything against lm-evaluation-harness, side by side in one run: same model (the embedded
SmolLM2-135M-Instruct folder), same generate-until task over the same local data (arith_mini's
JSONL, same prompt, chat template on both sides, stop at a newline), same batch size and
generation length, greedy.

    python -m venv /tmp/lmeval-venv
    /tmp/lmeval-venv/bin/pip install 'lm_eval[hf]' torch==2.13.0 -c constraints.txt
    python benchmarks/vs_lm_eval.py --lm-eval-python /tmp/lmeval-venv/bin/python [--batch-size 8] [--rounds 1]

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import timed  # benchmarks/timing.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "eval_anything" / "tasks" / "builtin" / "data" / "arith_mini.jsonl"

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


def lm_eval_side(python: str, model_dir: Path, work: Path, batch: int, max_new: int, env: dict) -> tuple[float, float]:
    tasks = work / "lm_eval_tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "arith_mini_ea.yaml").write_text(LM_EVAL_TASK.format(data=DATA, max_new_tokens=max_new))
    out = work / f"lm_eval_out_{time.monotonic_ns()}"
    command = [python, "-m", "lm_eval", "--model", "hf", "--model_args",
               f"pretrained={model_dir},dtype=float32", "--device", "cpu", "--tasks", "arith_mini_ea",
               "--include_path", str(tasks), "--batch_size", str(batch), "--apply_chat_template",
               "--output_path", str(out)]
    elapsed = timed(command, env)
    (result_file,) = out.rglob("results_*.json")
    result = json.loads(result_file.read_text())["results"]["arith_mini_ea"]
    return elapsed, result["exact_match,last_number"]


def eval_anything_side(model_dir: Path, work: Path, batch: int, max_new: int, env: dict, batching: str | None
                       ) -> tuple[float, float]:
    out = work / f"ea_out_{time.monotonic_ns()}"
    command = [sys.executable, "-m", "eval_anything", "run", "--model", f"hf:{model_dir}", "--tasks", "arith_mini",
               "--batch-size", str(batch), "--max-new-tokens", str(max_new), "--output-dir", str(out)]
    if batching:
        command += ["--model-args", f"batching={batching}"]
    elapsed = timed(command, env)
    (run_dir,) = out.iterdir()
    result = json.loads((run_dir / "results.json").read_text())["tasks"]["arith_mini"]
    return elapsed, result["metrics"]["numeric"]["value"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm-eval-python", default="/tmp/lmeval-venv/bin/python")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
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
        for _ in range(args.rounds):
            if with_lm_eval:
                seconds, lm_score = lm_eval_side(args.lm_eval_python, model_dir, work, args.batch_size,
                                                 args.max_new_tokens, env)
                lm_times.append(seconds)
            seconds, ea_score = eval_anything_side(model_dir, work, args.batch_size, args.max_new_tokens, env,
                                                   args.batching)
            ea_times.append(seconds)
    ea = min(ea_times)
    print(f"model {model_dir.name}, arith_mini (40 items), batch {args.batch_size}, {args.max_new_tokens} new tokens, "
          f"{args.threads} threads, batching {args.batching or 'default'}, best of {args.rounds}")
    print(f"eval-anything: {ea:7.2f} s  numeric {ea_score:.4f}")
    if not with_lm_eval:
        return
    lm = min(lm_times)
    print(f"lm-eval:       {lm:7.2f} s  exact_match (last number) {lm_score:.4f}")
    print(f"wall-time ratio eval-anything / lm-eval: {ea / lm:.2f} (goal <= 0.5)  ·  scores equal: {lm_score == ea_score}")


if __name__ == "__main__":
    main()
