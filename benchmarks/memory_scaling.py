"""Memory stays flat: peak RSS of `eval-anything run` on N and 10xN samples of the same generated task.

    python benchmarks/memory_scaling.py [--n 2000] [--factor 10]

Each size runs in a fresh subprocess with a tiny in-process model that answers from the prompt (so
no model weights hide the harness's own growth; `--backend replay` uses replayed predictions, whose
index the replay backend holds whole) and reports its peak RSS from `resource.getrusage(RUSAGE_SELF)`. Samples
stream from the dataset through the scorers to the sample log; what may grow with N is only what a
task's metrics need per sample (a float per score). Prints both peaks and their ratio (goal <= 1.2).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from timing import markdown_table  # benchmarks/timing.py, beside this script

TITLE = "Memory against the number of samples"
MODELS = {"echo": "a constant-memory in-process model (the default, `--backend echo`)",
          "replay": "`--backend replay` (it indexes every prediction, so its \"weights\" grow with N)"}

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    from eval_anything.datamodel import ModelOutput
    from eval_anything.models import Model, ModelSpec, backends, resolve_spec
    from eval_anything.runner import evaluate
    from eval_anything.settings import RunSettings
    from eval_anything.tasks import Catalog

    class Echo(Model):  # answers from the prompt itself: a model whose memory does not depend on N
        batch_size = 32
        def generate(self, requests):
            answers = [r.prompt_text.rsplit(" ", 1)[-1].rstrip(".") for r in requests]
            return [ModelOutput(text=a, raw_text=a) for a in answers]

    root, backend = Path(sys.argv[1]), sys.argv[2]
    backends.register("echo", lambda spec: Echo(spec))
    tasks = Catalog([root / "tasks"]).resolve("mem_scaling")
    spec = ModelSpec("echo", "echo") if backend == "echo" else resolve_spec(str(root / "preds.jsonl"))
    started = time.perf_counter()
    report = evaluate(spec, tasks, RunSettings(output_dir=root / "runs"))
    result = report.results["tasks"]["mem_scaling"]
    print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "seconds": time.perf_counter() - started, "samples": result["counts"]["samples"],
                      "value": result["metrics"]["exact_match"]["value"]}))
""")

FILLER = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 6  # a few hundred bytes a prompt


def make_task(root: Path, n: int) -> None:
    tasks = root / "tasks"
    tasks.mkdir(parents=True)
    with (tasks / "mem_scaling.jsonl").open("w") as data, (root / "preds.jsonl").open("w") as preds:
        for i in range(n):
            data.write(json.dumps({"id": f"q{i:07d}", "question": f"{FILLER} Item {i}: say {i % 97}.",
                                   "answer": str(i % 97)}) + "\n")
            preds.write(json.dumps({"task": "mem_scaling", "id": f"q{i:07d}",
                                    "text": str(i % 97) if i % 4 else "wrong"}) + "\n")
    (tasks / "mem_scaling.yaml").write_text(
        "name: mem_scaling\nversion: 1\ndescription: generated task for the memory benchmark\ntags: [text]\n"
        "dataset: {path: mem_scaling.jsonl}\ninput:\n  - text: question\ntarget: answer\n"
        "prompt: '{{ question }}'\ngeneration: {max_new_tokens: 8}\nscorers: [exact_match]\n")


def measure(n: int, backend: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_task(root, n)
        out = subprocess.run([sys.executable, "-c", CHILD, str(root), backend], check=True, capture_output=True,
                             text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def results_table(backend: str, small: dict, large: dict) -> tuple[list[str], list[list[str]]]:
    """docs/performance.md's columns: the model, the peak RSS at each size (the child's `measure` records), ratio."""
    def samples(row: dict) -> str:
        return f"{row['samples']:,} samples".replace(",", " ")

    return (["model", samples(small), samples(large), "ratio"],
            [[MODELS[backend], f"{small['peak_rss_mib']:.1f} MiB", f"{large['peak_rss_mib']:.1f} MiB",
              f"{large['peak_rss_mib'] / small['peak_rss_mib']:.2f}"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--backend", choices=("echo", "replay"), default="echo",
                        help="echo: a constant-memory model; replay: predictions from a .jsonl, which the replay "
                             "backend indexes whole (its 'weights' grow with N)")
    args = parser.parse_args()
    small, large = measure(args.n, args.backend), measure(args.n * args.factor, args.backend)
    for row in (small, large):
        print(f"{row['samples']:>8} samples: peak RSS {row['peak_rss_mib']:7.1f} MiB, {row['seconds']:6.1f} s, "
              f"exact_match {row['value']:.4f}")
    print(f"peak RSS ratio ({args.factor}x samples): {large['peak_rss_mib'] / small['peak_rss_mib']:.3f} (goal <= 1.2)")
    markdown_table(TITLE, *results_table(args.backend, small, large))


if __name__ == "__main__":
    main()
