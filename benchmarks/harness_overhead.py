"""Harness overhead: the same prompts through a plain batched `generate` loop and through
`eval-anything run`, same model, batch size and generation length, in one process.

    python benchmarks/harness_overhead.py [--rounds 2] [--batch-size 8] [--max-new-tokens 32]

Both sides load the model from the same folder, sort prompts by length into batches and stop
each row at its own stop string or EOS. Rounds alternate the two sides to spread machine noise;
the best round of each is compared. The harness runs twice: with the hf backend's default
continuous batching and with `batching=static` (the plain loop's own method). Prints generated
tokens/s, wall time and their ratios to the plain loop.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from eval_anything.models import ModelSpec
from eval_anything.models.embedded import embedded_model_dir
from eval_anything.runner import evaluate
from eval_anything.settings import RunSettings
from eval_anything.tasks import Catalog
from timing import markdown_table  # benchmarks/timing.py, beside this script

STOP = "\n"
TITLE = "Harness overhead against a plain `generate` loop"
LABELS = {"plain": "plain `generate` loop", "eval-anything continuous": "eval-anything, continuous batching (default)",
          "eval-anything static": "eval-anything, `batching=static`"}


def plain_loop(model_dir: Path, prompts: list[str], batch_size: int, max_new_tokens: int) -> tuple[float, int]:
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
             for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: -len(tokenizer(texts[i], add_special_tokens=False).input_ids))
    generated = 0
    for start in range(0, len(order), batch_size):
        batch = [texts[i] for i in order[start : start + batch_size]]
        inputs = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, stop_strings=[STOP], tokenizer=tokenizer)
        for row in out[:, inputs.input_ids.shape[1]:].tolist():
            # up to the stop (a row stopped early is padded after it) or EOS, as the harness counts
            ends = [i for i, t in enumerate(row) if t in (tokenizer.eos_token_id, tokenizer.pad_token_id)
                    or STOP in tokenizer.decode([t])]
            generated += ends[0] + 1 if ends else len(row)
            tokenizer.decode(row, skip_special_tokens=True)
    return time.perf_counter() - started, generated


def harness(model_dir: Path, task_name: str, batch_size: int, max_new_tokens: int, batching: str
            ) -> tuple[float, int]:
    task = Catalog().resolve(task_name)
    spec = ModelSpec("hf", str(model_dir), {"batch_size": batch_size, "batching": batching})
    with tempfile.TemporaryDirectory() as output_dir:
        started = time.perf_counter()
        report = evaluate(spec, task, RunSettings(output_dir=Path(output_dir), max_new_tokens=max_new_tokens))
        elapsed = time.perf_counter() - started
    return elapsed, report.results["tasks"][task_name]["usage"]["output_tokens"]


def results_table(best: dict[str, tuple[float, int]], rounds: int, setup: str) -> tuple[list[str], list[list[str]]]:
    """docs/performance.md's columns for one run of this script: best wall time of each side, its generated
    tokens/s, then each harness batching's throughput ratio to the plain loop; `setup` heads the first column."""
    plain_s, plain_tokens = best["plain"]
    rows = [[LABELS.get(name, name), f"{seconds:.2f} s", f"{tokens / seconds:.1f}"]
            for name, (seconds, tokens) in best.items()]
    for name, (seconds, tokens) in best.items():
        if name != "plain":
            batching = name.removeprefix("eval-anything ")
            rows.append([f"ratio {batching} / plain (throughput)",
                         f"{(tokens / seconds) / (plain_tokens / plain_s):.2f}", ""])
    return [setup, f"this run (best of {rounds})", "generated tokens/s"], rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="arith_mini")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    model_dir = embedded_model_dir()
    task = Catalog().tasks[args.task]
    generation = task.generation(seed=1234, max_new_tokens=args.max_new_tokens)
    assert generation.stop == (STOP,), "the plain loop assumes the task stops at a newline"
    prompts = [task.requests(s, generation)[0].prompt_text for s in task.samples()]
    print(f"{len(prompts)} prompts from {args.task}, batch {args.batch_size}, {args.max_new_tokens} new tokens max, "
          f"torch threads {torch.get_num_threads()}")
    sides = {"plain": lambda: plain_loop(model_dir, prompts, args.batch_size, args.max_new_tokens)}
    for batching in ("continuous", "static"):
        sides[f"eval-anything {batching}"] = (
            lambda b=batching: harness(model_dir, args.task, args.batch_size, args.max_new_tokens, b))
    best: dict[str, tuple[float, int]] = {}
    for round_index in range(args.rounds):
        for name, run in sides.items():
            elapsed, tokens = run()
            print(f"round {round_index + 1} {name:>24}: {elapsed:6.2f} s, {tokens} tokens, {tokens / elapsed:6.1f} tok/s")
            if name not in best or elapsed < best[name][0]:
                best[name] = (elapsed, tokens)
    plain_s, plain_tokens = best["plain"]
    for name, (seconds, tokens) in best.items():
        print(f"best {name:>24}: {seconds:6.2f} s  {tokens} tokens  {tokens / seconds:6.1f} tok/s")
    for name, (seconds, tokens) in best.items():
        if name != "plain":
            print(f"{name}: throughput ratio to plain {(tokens / seconds) / (plain_tokens / plain_s):.3f} "
                  f"(goal >= 0.95), wall-time ratio plain / {name} {plain_s / seconds:.3f}")
    setup = (f"`{args.task}` ({len(prompts)} prompts), batch {args.batch_size}, "
             f"up to {args.max_new_tokens} new tokens, {torch.get_num_threads()} torch threads")
    markdown_table(TITLE, *results_table(best, args.rounds, setup))


if __name__ == "__main__":
    main()
