"""Generation throughput on one CUDA GPU, side by side in one run: eval-anything's `hf` backend (bfloat16,
continuous batching) and `vllm` backend against lm-evaluation-harness's `hf` and `vllm` models, on the same
generate-until task (vs_lm_eval.py's arithmetic questions and task files), the same model and length, greedy.

NEEDS A CUDA GPU (and vLLM for the vllm sides); it has not been run on the CPU machines the tests run on.

    python -m venv /tmp/lmeval-venv && /tmp/lmeval-venv/bin/pip install 'lm_eval[hf,vllm]'
    python benchmarks/gpu_throughput.py --model ORG/NAME_OR_DIR [--lm-eval-python /tmp/lmeval-venv/bin/python]
        [--items 512] [--max-new-tokens 256] [--batch-size 64] [--sides ea-hf,ea-vllm,lm-hf,lm-vllm]

Each side is one end-to-end subprocess, timed from outside. Output tokens are counted the same way for every
side: each generated answer re-tokenised with the model's tokenizer (from eval-anything's sample log and
lm-eval's --log_samples). Peak GPU memory is nvidia-smi's memory.used, polled every 0.2 s, over what was used
before the side started. Prints tokens/s, peak memory and score per side, and the ratios the issue sets as goals
(ours hf / lm-eval hf >= 1.5, ours vllm / lm-eval vllm >= 1.0). lmms-eval is not a side: its generate tasks
come from its own registry, with no local-file task to give it the same questions.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from timing import markdown_table, timed  # benchmarks/timing.py, beside this script
from vs_lm_eval import LM_EVAL_TASK, arithmetic_questions, eval_anything_task

TITLE = "GPU throughput against lm-evaluation-harness"
SIDES = ("ea-hf", "ea-vllm", "lm-hf", "lm-vllm")


class PeakGpuMemory:
    """Polls nvidia-smi while a side runs; `peak_mib` is the most used over the start."""

    def __init__(self) -> None:
        self.start = self._used()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    @staticmethod
    def _used() -> int:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, check=True).stdout
        return int(out.split()[0])

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self._used())

    def __enter__(self) -> "PeakGpuMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> int:
        return self.peak - self.start


def eval_anything_side(backend: str, model: str, task: Path, work: Path, args: argparse.Namespace,
                       env: dict) -> tuple[float, list[str], float]:
    out = work / f"ea_{backend}_{time.monotonic_ns()}"
    model_args = "dtype=bfloat16,device=cuda,batching=continuous" if backend == "hf" else "dtype=bfloat16"
    command = [sys.executable, "-m", "eval_anything", "run", "--model", f"{backend}:{model}", "--model-args",
               model_args, "--tasks", str(task), "--max-new-tokens", str(args.max_new_tokens),
               "--output-dir", str(out)]
    if backend == "hf":
        command += ["--batch-size", str(args.batch_size)]
    elapsed = timed(command, env)
    (run_dir,) = out.iterdir()
    score = json.loads((run_dir / "results.json").read_text())["tasks"]["arith_bench"]["metrics"]["numeric"]["value"]
    lines = (run_dir / "samples" / "arith_bench.jsonl").read_text().splitlines()
    texts = [json.loads(line)["outputs"][0]["raw_text"] for line in lines]
    return elapsed, texts, score


def lm_eval_side(backend: str, model: str, data: Path, work: Path, args: argparse.Namespace,
                 env: dict) -> tuple[float, list[str], float]:
    tasks = work / "lm_eval_tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "arith_mini_ea.yaml").write_text(LM_EVAL_TASK.format(data=data, max_new_tokens=args.max_new_tokens))
    out = work / f"lm_{backend}_{time.monotonic_ns()}"
    command = [args.lm_eval_python, "-m", "lm_eval", "--model", backend, "--model_args",
               f"pretrained={model},dtype=bfloat16", "--tasks", "arith_mini_ea", "--include_path", str(tasks),
               "--batch_size", str(args.batch_size if backend == "hf" else "auto"), "--apply_chat_template",
               "--log_samples", "--output_path", str(out)]
    if backend == "hf":
        command += ["--device", "cuda:0"]
    elapsed = timed(command, env)
    (result_file,) = out.rglob("results_*.json")
    score = json.loads(result_file.read_text())["results"]["arith_mini_ea"]["exact_match,last_number"]
    (samples,) = out.rglob("samples_arith_mini_ea_*.jsonl")
    texts = [json.loads(line)["resps"][0][0] for line in samples.read_text().splitlines()]
    return elapsed, texts, score


def count_tokens(model_dir: Path, texts: list[str]) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return sum(len(tokenizer(text, add_special_tokens=False).input_ids) for text in texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder or Hub id (resolved once, then by folder)")
    parser.add_argument("--lm-eval-python", default="/tmp/lmeval-venv/bin/python")
    parser.add_argument("--items", type=int, default=512)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64, help="the hf sides' batch (vLLM schedules its own)")
    parser.add_argument("--sides", default=",".join(SIDES))
    args = parser.parse_args()
    sides = [side for side in args.sides.split(",") if side]
    if not Path(args.lm_eval_python).exists():
        sides = [side for side in sides if not side.startswith("lm-")]
        print(f"no lm-eval venv at {args.lm_eval_python}: eval-anything sides only")

    from eval_anything.models.weights import resolve_weights

    model_dir = resolve_weights(args.model).path  # every side loads the same folder
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    measured: dict[str, tuple[float, int, int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = arithmetic_questions(work / "arith.jsonl", args.items)
        task = eval_anything_task(work, data, args.max_new_tokens)
        for side in sides:
            owner, backend = side.split("-")
            with PeakGpuMemory() as memory:
                if owner == "ea":
                    seconds, texts, score = eval_anything_side(backend, str(model_dir), task, work, args, env)
                else:
                    seconds, texts, score = lm_eval_side(backend, str(model_dir), data, work, args, env)
            measured[side] = (seconds, count_tokens(model_dir, texts), memory.peak_mib, score)
    rows = []
    for side, (seconds, tokens, peak, score) in measured.items():
        print(f"{side:8s} {seconds:8.1f} s  {tokens / seconds:9.1f} tokens/s  peak {peak:7d} MiB  score {score:.4f}")
        rows.append([side, f"{seconds:.1f} s", f"{tokens / seconds:.1f}", f"{peak} MiB", f"{score:.3f}"])
    for ours, theirs, goal in (("ea-hf", "lm-hf", 1.5), ("ea-vllm", "lm-vllm", 1.0)):
        if ours in measured and theirs in measured:
            ratio = (measured[ours][1] / measured[ours][0]) / (measured[theirs][1] / measured[theirs][0])
            print(f"tokens/s {ours} / {theirs}: {ratio:.2f} (goal >= {goal})")
            rows.append([f"{ours} / {theirs}", "", f"ratio {ratio:.2f}", "", ""])
    markdown_table(TITLE, ["side", "wall", "tokens/s", "peak GPU memory", "score"], rows)


if __name__ == "__main__":
    main()
