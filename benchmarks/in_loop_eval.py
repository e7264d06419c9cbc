"""In-loop evaluation against save-and-reload: evaluating the model a training process holds.

    python benchmarks/in_loop_eval.py [--model DIR] [--limit 20] [--max-new-tokens 8] [--tasks arith_mini]

In-loop: `EvalAnythingCallback.evaluate` on the model in memory (the `live` backend: static batches,
unpacked linears). Reload, what one does without it: `save_pretrained` the model and its tokenizer,
then `eval-anything run --model DIR` in a new process (imports, load, the hf backend's defaults:
continuous batching, packed linears), while the training process keeps its own copy. Prints the wall
time of each, their ratio, the memory the in-loop evaluation added to this process and the peak memory
of the evaluating process, and whether the answers agree. Default model: the embedded SmolLM2-135M-Instruct.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import dated, markdown_table  # benchmarks/timing.py, beside this script

TITLE = "In-loop evaluation against save and reload"


def rss_mib() -> float:
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def answers(run_dir: Path, tasks: list[str]) -> dict[str, str]:
    out = {}
    for task in tasks:
        for line in (run_dir / "samples" / f"{task}.jsonl").read_text().splitlines():
            record = json.loads(line)
            out[f"{task}/{record['id']}"] = record["outputs"][0]["text"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a transformers model folder (default: the embedded SmolLM2)")
    parser.add_argument("--tasks", default="arith_mini")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eval_anything.align.callback import EvalAnythingCallback
    from eval_anything.models.embedded import embedded_model_dir

    source = Path(args.model) if args.model else embedded_model_dir()
    tasks = args.tasks.split(",")
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).train()  # as a trainer holds it
    tokenizer = AutoTokenizer.from_pretrained(source)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        callback = EvalAnythingCallback(tasks, every=1, output_dir=work / "runs", limit=args.limit,
                                        max_new_tokens=args.max_new_tokens, base_model=str(source), method="benchmark")
        before = rss_mib()
        started = time.perf_counter()
        live = callback.evaluate(model, tokenizer, step=1, trainer_output_dir=work / "trainer")
        in_loop_s = time.perf_counter() - started
        added = rss_mib() - before

        started = time.perf_counter()
        checkpoint = work / "checkpoint"
        model.save_pretrained(checkpoint)
        tokenizer.save_pretrained(checkpoint)
        command = [sys.executable, "-m", "eval_anything", "run", "--model", str(checkpoint), "--tasks", args.tasks,
                   "--limit", str(args.limit), "--max-new-tokens", str(args.max_new_tokens),
                   "--output-dir", str(work / "reload")]
        done = subprocess.run(command, capture_output=True, text=True)
        reload_s = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        (reloaded,) = (work / "reload").iterdir()
        same = answers(live.run_dir, tasks) == answers(reloaded, tasks)
    markdown_table(TITLE, ["date", "model", "tasks, items", "in-loop s", "save + reload s", "reload / in-loop",
                           "in-loop added MiB", "reload process peak MiB", "same answers"],
                   [[dated(), source.name, f"{args.tasks}, {args.limit}", f"{in_loop_s:.1f}", f"{reload_s:.1f}",
                     f"{reload_s / in_loop_s:.2f}", f"{added:.0f}", f"{child_peak:.0f}", "yes" if same else "no"]])


if __name__ == "__main__":
    main()
