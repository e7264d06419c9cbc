"""The hf backend's static batches against transformers' continuous batching (`generate_batch`),
side by side in one process: same model object, same prompts, greedy, same generation length.

    python benchmarks/continuous_batching.py [--rounds 2] [--batch-size 8] [--max-new-tokens 32] [--threads 1]

Prompts: `arith_mini` (the 40 items `benchmarks/vs_lm_eval.py` uses), rendered by the hf backend
itself (chat template), on the embedded SmolLM2-135M-Instruct in fp32 on the CPU.

- static: `HFModel.generate` as `eval-anything run` calls it (length-sorted batches of
  --batch-size, each row stopped at the task's stop string or EOS).
- continuous: `model.generate_batch(token_ids, ...)` on the same loaded model, with a paged cache
  sized for the workload, once with at most --batch-size requests in flight (the same
  concurrency), once with every request in flight, and once per --batch-size requests (one call
  each, as `Model.stream` hands `generate` its requests); with --default-sizing also with
  transformers' own sizing, which on a CPU takes 80-90 % of the machine's free RAM for the cache.
  It has no stop strings, so the stop is given as end tokens: EOS plus every vocabulary token
  whose text contains a stop string (exact for a one-character stop such as arith_mini's
  newline; a stop spanning tokens would only be cut afterwards). Answers are cut and stripped
  as the hf backend cuts them.

Model loading is not timed; the continuous side's time includes setting up its manager and
paged cache on every call, as an hf backend using it would. Rounds alternate the sides; the best
round of each is compared. Prints wall times, the ratio continuous / static, and how many
answers are identical to the static ones.
"""
from __future__ import annotations

import argparse
import logging
import time

import torch

from eval_anything.models import ModelSpec
from eval_anything.models.base import cut_at_stop
from eval_anything.models.embedded import embedded_model_dir
from eval_anything.models.hf import HFModel
from eval_anything.tasks import Catalog


def static_side(model: HFModel, requests: list) -> tuple[float, list[str], int]:
    started = time.perf_counter()
    outputs = model.generate(requests)
    elapsed = time.perf_counter() - started
    return elapsed, [o.text for o in outputs], sum(o.usage.output_tokens for o in outputs)


def end_tokens(model: HFModel, stops: tuple[str, ...]) -> list[int]:
    """EOS/pad and every token whose text contains a stop string: per-row stops as end tokens."""
    tokenizer = model.tokenizer
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    ends = {tokenizer.eos_token_id, tokenizer.pad_token_id, *_generation_eos(model)}
    ends.update(i for i, text in enumerate(texts) if any(stop in text for stop in stops))
    return sorted(e for e in ends if e is not None)


def _generation_eos(model: HFModel) -> list[int]:
    eos = model.model.generation_config.eos_token_id
    return [] if eos is None else list(eos) if isinstance(eos, (list, tuple)) else [eos]


PAGE_SIZE = 32
"""Tokens per cache page for the workload-sized cache (transformers' default is 256)."""


def workload_cache(inputs: list[list[int]], max_new_tokens: int, in_flight: int) -> dict[str, int]:
    """A paged cache for this workload only: `in_flight` requests of the longest prompt plus the
    generation, and prefill of that many prompts in one step. Left to itself, transformers sizes
    the cache from free device memory, which on a CPU means 80-90 % of the machine's free RAM."""
    pages = -(-(max(map(len, inputs)) + max_new_tokens) // PAGE_SIZE)
    return {"page_size": PAGE_SIZE, "num_blocks": in_flight * (pages + 1), "max_requests_per_batch": in_flight,
            "max_batch_tokens": min(4096, in_flight * max(map(len, inputs)))}


def continuous_side(model: HFModel, requests: list, ends: list[int], in_flight: int | None
                    ) -> tuple[float, list[str], int]:
    """`in_flight` None: transformers' own cache sizing; otherwise a cache sized for the workload."""
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    generation = requests[0].generation
    tokenizer = model.tokenizer
    started = time.perf_counter()
    inputs = [tokenizer(model._render(r, model._prepare(r)), add_special_tokens=False).input_ids for r in requests]
    config = GenerationConfig(max_new_tokens=generation.max_new_tokens, do_sample=False, eos_token_id=ends,
                              pad_token_id=tokenizer.pad_token_id)
    sizing = {} if in_flight is None else workload_cache(inputs, generation.max_new_tokens, in_flight)
    results = model.model.generate_batch(inputs, generation_config=config,
                                         continuous_batching_config=ContinuousBatchingConfig(**sizing))
    texts, tokens = [], 0
    for result in results.values():  # in the order of `inputs`
        if result.error is not None:
            raise SystemExit(f"continuous batching failed: {result.error}")
        raw = tokenizer.decode(result.generated_tokens, skip_special_tokens=True)
        texts.append(cut_at_stop(raw, generation.stop).strip())
        tokens += len(result.generated_tokens)
    if len(texts) != len(requests):
        raise SystemExit(f"continuous batching returned {len(texts)} of {len(requests)} answers")
    return time.perf_counter() - started, texts, tokens


def chunked(model: HFModel, requests: list, ends: list[int], size: int) -> tuple[float, list[str], int]:
    """One `generate_batch` call per `size` requests, as `Model.stream` hands `generate` its requests:
    what continuous batching inside `HFModel.generate` alone would do."""
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i].prompt_text))  # as the runner sorts
    elapsed, texts, tokens = 0.0, [""] * len(requests), 0
    for start in range(0, len(order), size):
        chunk = order[start : start + size]
        seconds, more, count = continuous_side(model, [requests[i] for i in chunk], ends, size)
        elapsed, tokens = elapsed + seconds, tokens + count
        for index, text in zip(chunk, more):
            texts[index] = text
    return elapsed, texts, tokens


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
    ends = end_tokens(model, generation.stop)
    sides = {"static": lambda: static_side(model, requests),
             f"continuous, {args.batch_size} in flight": lambda: continuous_side(model, requests, ends,
                                                                              args.batch_size),
             f"continuous, {len(requests)} in flight": lambda: continuous_side(model, requests, ends, len(requests)),
             f"continuous, calls of {args.batch_size}": lambda: chunked(model, requests, ends, args.batch_size)}
    if args.default_sizing:
        sides["continuous, default sizing"] = lambda: continuous_side(model, requests, ends, None)
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
    static_s, static_texts, _ = best["static"]
    print(f"best of {args.rounds}:")
    print(f"{'static (hf backend)':>28}: {static_s:7.2f} s")
    for name, (elapsed, texts, _) in best.items():
        if name == "static":
            continue
        same = sum(a == b for a, b in zip(texts, static_texts))
        print(f"{name:>28}: {elapsed:7.2f} s  ratio continuous / static {elapsed / static_s:.2f}  "
              f"identical answers {same}/{len(requests)}")
        for index, (a, b) in enumerate(zip(texts, static_texts)):
            if a != b:
                print(f"    differs at {requests[index].sample_id}: static {b!r} vs continuous {a!r}")


if __name__ == "__main__":
    main()
