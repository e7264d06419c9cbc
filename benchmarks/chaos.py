"""Chaos: many random faults (SIGKILL, SIGTERM, a full disk at a random fsync, a second process on
the run directory, the model or the judge answering a share of requests 429 with Retry-After, one of
two data-parallel ranks SIGKILLed) against one judged run, each landing while samples are generated
or while they are judged, then the same command; afterwards one run directory, every sample once, and
results equal to a run no fault touched (tests/chaos.py does the work; tests/test_chaos.py runs one
round of each kind).

    python benchmarks/chaos.py [--rounds 24] [--items 800] [--seed 18]

Prints, per fault kind and phase, how many rounds hit it and how many samples were logged before
and after it (a killed rank's partner finishes its own shard, then notices within --rank-timeout 3 s:
the seconds from the kill to its exit follow), then the wall time of the faulted run against the
clean one. It asserts nothing itself beyond what tests/chaos.py checks: a broken invariant stops it
with the failing check.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from chaos import Chaos, Stub, check, clean_run, run_chaos, write_task  # noqa: E402
from timing import markdown_table  # noqa: E402  benchmarks/timing.py, beside this script


def _noticed(entry: dict) -> str:
    return f" ({entry['noticed_s']:.1f} s)" if "noticed_s" in entry else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--items", type=int, default=800)
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, Stub() as stub:
        root = Path(folder)
        chaos = Chaos(stub, write_task(root / "tasks", args.items), root / "chaos", args.items)
        started = time.perf_counter()
        clean = clean_run(chaos, root / "clean")
        clean_s = time.perf_counter() - started
        started = time.perf_counter()
        log = run_chaos(chaos, args.rounds, args.seed)
        chaos_s = time.perf_counter() - started
        check(chaos, clean)
    rounds: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for entry in log:
        rounds[entry["fault"], entry["phase"]].append(entry)
    rows = [(fault, phase, len(hits), " ".join(f"{h['before']}→{h['after']}" + _noticed(h) for h in hits))
            for (fault, phase), hits in sorted(rounds.items())]
    rows.append(("(all, then the same command)", "", len(log), f"{chaos_s:.1f} s against {clean_s:.1f} s clean"))
    markdown_table(f"Chaos: {args.rounds} faults on a judged run of {args.items} samples, then the same command: "
                   "one run directory, no duplicate, nothing missing, equal results",
                   ("fault", "phase", "rounds", "samples logged before→after each"), rows)


if __name__ == "__main__":
    main()
