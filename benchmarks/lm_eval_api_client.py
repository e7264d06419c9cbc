"""lm-evaluation-harness's API model against a chat-completions server: the lm-eval side of
`judge_throughput.py`. Runs under lm-eval's own Python (its venv), not eval-anything's:

    /tmp/lmeval-venv/bin/python benchmarks/lm_eval_api_client.py BASE_URL --n 256 --concurrency 32

Sends N generate-until requests through `local-chat-completions` (`LocalChatCompletion`, aiohttp,
`num_concurrent` in flight) after one warm-up batch, and prints one JSON line: the wall and CPU
seconds of `generate_until` alone (no task loading, no logging, no scoring).
"""
from __future__ import annotations

import argparse
import json
import logging
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_url", help="the API root, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # lm-eval logs a line per batch setting
    from lm_eval.api.instance import Instance
    from lm_eval.models.api_models import JsonChatStr
    from lm_eval.models.openai_completions import LocalChatCompletion

    model = LocalChatCompletion(base_url=args.base_url.rstrip("/") + "/chat/completions", model="bench-judge",
                                num_concurrent=args.concurrency, max_retries=3, timeout=60)

    def requests(n: int) -> list[Instance]:
        return [Instance(request_type="generate_until", doc={}, idx=i, arguments=(
            JsonChatStr(json.dumps([{"role": "user", "content": f"Question {i}: what is {i} + {i}? It is {2 * i}."}])),
            {"until": [], "max_gen_toks": 256})) for i in range(n)]

    model.generate_until(requests(args.concurrency), disable_tqdm=True)  # imports, first connections
    batch = requests(args.n)
    started, cpu = time.perf_counter(), time.process_time()
    replies = model.generate_until(batch, disable_tqdm=True)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    answered = sum(1 for r in replies if "Rating" in r)
    print(json.dumps({"wall_s": elapsed, "cpu_s": cpu, "answered": answered}))


if __name__ == "__main__":
    main()
