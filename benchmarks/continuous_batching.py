"""The hf backend's two batchings side by side in one process: same model object, same prompts,
greedy, same generation length, each as `eval-anything run` drives it (`HFModel.stream` over the
runner's length-sorted window of requests).

    python benchmarks/continuous_batching.py [--rounds 2] [--batch-size 8] [--max-new-tokens 32] [--threads 1]

Prompts: `arith_mini` (the 40 items `benchmarks/vs_lm_eval.py` uses), rendered by the hf backend
itself (chat template), on the embedded SmolLM2-135M-Instruct in fp32 on the CPU.

- static (`batching=static`): length-sorted batches of --batch-size, each row stopped at the
  task's stop string or EOS.
- continuous (`batching=continuous`, the default): transformers' continuous batching over the
  whole window, a paged cache sized for it, at most --batch-size requests in flight (and once
  with every request in flight). The stop is given as end tokens (EOS plus every vocabulary token
  whose text contains a stop string) and cut afterwards.
- with --default-sizing also `generate_batch` with transformers' own cache sizing, which on a CPU
  takes 80-90 % of the machine's free RAM for the cache (5-6x slower).

Model loading is not timed; the continuous side's time includes setting up its manager and
paged cache for the window, not finding the end tokens (the backend does that once per stop
tuple and caches it; it is done before the rounds here). Rounds alternate the sides; the best round of each is compared. Prints wall times,
generated tokens, the ratio continuous / static, and how many answers are identical.
"""
from __future__ import annotations

import argparse
import logging
import time

import torch

from eval_anything.models import ModelSpec
from eval_anything.models.base import cut_at_stop
from eval_anything.models.embedded import embedded_model_dir
from eval_anything.models.hf import CONTINUOUS, STATIC, HFModel
from eval_anything.tasks import Catalog
from timing import markdown_table  # benchmarks/timing.py, beside this script

TITLE = "Continuous against static batching"


def backend_side(model: HFModel, requests: list, batching: str, in_flight: int) -> tuple[float, list[str], int]:
    """`HFModel.stream` with `batching` and `in_flight` requests at a time; answers in request order."""
    model.batching, model._batch_size = batching, in_flight
    started = time.perf_counter()
    outputs = {id(request): output for request, output in model.stream(requests)}
    elapsed = time.perf_counter() - started
    failed = [o.error for o in outputs.values() if o.error]
    if failed or len(outputs) != len(requests):
        raise SystemExit(f"{batching} batching failed: {failed[:1]}, {len(outputs)} of {len(requests)} answers")
    return elapsed, [outputs[id(r)].text for r in requests], sum(o.usage.output_tokens for o in outputs.values())


def default_sizing_side(model: HFModel, requests: list) -> tuple[float, list[str], int]:
    """`generate_batch` left to size its own cache (no ContinuousBatchingConfig)."""
    from transformers import GenerationConfig

    generation = requests[0].generation
    started = time.perf_counter()
    inputs = [model._token_ids(r) for r in requests]
    config = GenerationConfig(max_new_tokens=generation.max_new_tokens, do_sample=False,
                              eos_token_id=model._stop_tokens(generation.stop), pad_token_id=model.tokenizer.pad_token_id)
    results = list(model.model.generate_batch(inputs, generation_config=config).values())
    if len(results) != len(requests) or any(r.error for r in results):
        raise SystemExit("continuous batching with default sizing failed")
    texts = [cut_at_stop(model.tokenizer.decode(r.generated_tokens, skip_special_tokens=True), generation.stop).strip()
             for r in results]
    return time.perf_counter() - started, texts, sum(len(r.generated_tokens) for r in results)


def results_table(best: dict[str, tuple[float, list[str], int]], batch_size: int, max_new_tokens: int
                  ) -> tuple[list[str], list[list[str]]]:
    """docs/performance.md's columns: each side's best wall time, generated tokens, wall-time ratio to static
    and answers identical to static's (`best` maps the side names main() uses to (seconds, answers, tokens))."""
    static_s, static_texts, _ = best["static"]
    rows = []
    for name, (elapsed, texts, tokens) in best.items():
        if name == "static":
            rows.append([f"static: batches of {batch_size}", f"{elapsed:.2f} s", str(tokens), "1", "—"])
            continue
        in_flight = name.removeprefix("continuous, ").removesuffix(" in flight")
        label = (f"continuous, ≤ {in_flight} requests in flight" if in_flight == str(batch_size) else
                 f"continuous, all {in_flight} in flight" if in_flight == str(len(static_texts)) else name)
        same = sum(a == b for a, b in zip(texts, static_texts))
        rows.append([label, f"{elapsed:.2f} s", str(tokens), f"{elapsed / static_s:.2f}",
                     f"{same}/{len(static_texts)}"])
    return [f"up to {max_new_tokens} new tokens", "wall time", "generated tokens", "ratio to static",
            "answers identical to static"], rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="arith_mini")
    parser.add_argument("--limit", type=int, default=None, help="only the first N items")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: two spin-waiting OpenMP threads on a busy 2-core machine are "
                             "far slower)")
    parser.add_argument("--default-sizing", action="store_true",
                        help="also run continuous batching with transformers' own cache sizing (slow on a CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)

    model_dir = embedded_model_dir()
    model = HFModel(ModelSpec("hf", str(model_dir), {"batch_size": args.batch_size}))
    task = Catalog().tasks[args.task]
    generation = task.generation(seed=1234, max_new_tokens=args.max_new_tokens)
    assert generation.greedy, "the comparison is for greedy decoding"
    requests = [r for s in task.samples(args.limit) for r in task.requests(s, generation)]
    requests.sort(key=lambda r: -len(r.prompt_text))  # as the runner hands them to the backend
    ends = model._stop_tokens(generation.stop)
    sides = {"static": lambda: backend_side(model, requests, STATIC, args.batch_size),
             f"continuous, {args.batch_size} in flight": lambda: backend_side(model, requests, CONTINUOUS,
                                                                           args.batch_size),
             f"continuous, {len(requests)} in flight": lambda: backend_side(model, requests, CONTINUOUS,
                                                                         len(requests))}
    if args.default_sizing:
        sides["continuous, default sizing"] = lambda: default_sizing_side(model, requests)
    print(f"{len(requests)} prompts from {args.task}, {model_dir.name} fp32 cpu, static batch {args.batch_size}, "
          f"{args.max_new_tokens} new tokens max, stop {generation.stop!r} ({len(ends)} end tokens for continuous), "
          f"torch threads {torch.get_num_threads()}, transformers {__import__('transformers').__version__}")
    best: dict[str, tuple[float, list[str], int]] = {}
    for round_index in range(args.rounds):
        for name, run in sides.items():
            elapsed, texts, tokens = run()
            print(f"round {round_index + 1} {name:>28}: {elapsed:7.2f} s, {tokens} generated tokens", flush=True)
            if name not in best or elapsed < best[name][0]:
                best[name] = (elapsed, texts, tokens)
    static_s, static_texts, static_tokens = best["static"]
    print(f"best of {args.rounds}:")
    print(f"{'static (hf backend)':>28}: {static_s:7.2f} s  {static_tokens} generated tokens")
    for name, (elapsed, texts, tokens) in best.items():
        if name == "static":
            continue
        same = sum(a == b for a, b in zip(texts, static_texts))
        print(f"{name:>28}: {elapsed:7.2f} s  {tokens} generated tokens  ratio continuous / static "
              f"{elapsed / static_s:.2f}  identical answers {same}/{len(requests)}")
        for index, (a, b) in enumerate(zip(texts, static_texts)):
            if a != b:
                print(f"    differs at {requests[index].sample_id}: static {b!r} vs continuous {a!r}")
    markdown_table(TITLE, *results_table(best, args.batch_size, args.max_new_tokens))


if __name__ == "__main__":
    main()
