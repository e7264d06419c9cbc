"""How big a leaderboard gets and how fast it opens: runs with 100k samples in total.

Builds genuine run directories with the real runner and the replay backend (a generated text task
of N items per run; every third answer wrong, one in fifty a failed generation), renders the board,
then opens it in headless Chromium and measures first paint, the load event, and the time to open
the drill-down of the biggest (run, task), go to the next page and filter it.

    python benchmarks/leaderboard_scale.py --runs 2 --samples 50000 --out /tmp/lb-scale

Needs Chromium, chromedriver and selenium (as the browser tests do).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from browser import chromium_session, file_url, wait_for  # noqa: E402
from run_factory import make_run, write_task  # noqa: E402
from timing import markdown_table, spread  # noqa: E402  benchmarks/timing.py, beside this script

TITLE = "Leaderboard size and load time"


def _texts(samples: int, wordy: bool, seed: int) -> dict[str, str]:
    """Right answers written out: a short sentence, or with --wordy some 40 random words before it."""
    import random

    rng = random.Random(seed)
    vocabulary = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(5000)]
    texts = {}
    for i in range(1, samples, 3):
        filler = " ".join(rng.choice(vocabulary) for _ in range(40)) + ". " if wordy else ""
        texts[f"q{i:06d}"] = f"{filler}I think it is {i + i % 97}, since {i} + {i % 97} = {i + i % 97}."
    return texts


def results_table(samples: int, wordy: bool, sample_log_bytes: int, board_bytes: int, build_s: float,
                  loads: list[dict[str, float]]) -> tuple[list[str], list[list[str]]]:
    """docs/performance.md's columns: sizes, build time, and the range over the page loads of each browser
    timing (`loads`: one dict per load, milliseconds under paint, load, drill, next, filter)."""
    def ms(key: str) -> str:
        return spread([load[key] for load in loads], "{:.0f}") + " ms"

    return (["answers", "sample logs", "board HTML", "built in", "first contentful paint", "load event",
             f"open a {samples:,}-sample drill-down", "next page", "error filter"],
            [["~40 random words each (`--wordy`)" if wordy else "short sentences",
              f"{sample_log_bytes / 2**20:.1f} MiB", f"{board_bytes / 2**20:.1f} MiB", f"{build_s:.1f} s",
              ms("paint"), ms("load"), spread([load["drill"] / 1000 for load in loads]) + " s", ms("next"),
              ms("filter")]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=50_000, help="samples per run")
    parser.add_argument("--out", type=Path, default=Path("/tmp/lb-scale"))
    parser.add_argument("--wordy", action="store_true",
                        help="answers carry ~40 random words each (text that compresses like real model output)")
    args = parser.parse_args()

    from eval_anything.leaderboard import load_runs
    from eval_anything.leaderboard.html import render_html

    items = [{"id": f"q{i:06d}", "question": f"What is {i} plus {i % 97}? Answer with the number.",
              "answer": str(i + i % 97)} for i in range(args.samples)]
    tasks = write_task(args.out / "tasks", "scale_sum", items, scorer="numeric")
    run_dirs = []
    for r in range(args.runs):
        existing = sorted((args.out / f"run{r}" / "runs").glob("*")) if (args.out / f"run{r}").exists() else []
        if existing:
            run_dirs.append(existing[0])
            continue
        started = time.perf_counter()
        run_dirs.append(make_run(args.out / f"run{r}", f"model-{r}", "scale_sum", include=[tasks],
                                 wrong=[f"q{i:06d}" for i in range(r, args.samples, 3)],
                                 errors=[f"q{i:06d}" for i in range(0, args.samples, 50)],
                                 texts=_texts(args.samples, args.wordy, seed=r)))
        print(f"run {r}: {args.samples} samples written by the runner in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    html = render_html(load_runs(run_dirs))
    board = args.out / "board.html"
    board.write_text(html, encoding="utf-8")
    build_s = time.perf_counter() - started
    samples_bytes = sum((d / "samples" / "scale_sum.jsonl").stat().st_size for d in run_dirs)
    print(f"board: {args.runs * args.samples} samples, {board.stat().st_size / 2**20:.1f} MiB HTML "
          f"(sample logs {samples_bytes / 2**20:.1f} MiB), built in {build_s:.1f} s")

    loads = []
    with chromium_session() as driver:
        for attempt in range(3):
            driver.get("about:blank")
            started = time.perf_counter()
            driver.get(file_url(board))
            wait_for(driver, "document.body.dataset.state === 'ready'", timeout=120)
            wait_for(driver, "performance.getEntriesByType('paint').length > 0", timeout=30)
            paint = driver.execute_script(
                "const p = performance.getEntriesByName('first-contentful-paint')[0] || performance.getEntriesByType('paint')[0];"
                "const n = performance.getEntriesByType('navigation')[0];"
                "return [p ? p.startTime : null, n.domContentLoadedEventEnd, n.loadEventEnd]")
            wall = time.perf_counter() - started
            driver.execute_script("window.__t0 = performance.now();"
                                  "document.querySelector('#overview td[data-col=\"scale_sum/exact_match\"], #overview td.metric').click()")
            wait_for(driver, "document.body.dataset.drill === 'ready' && document.querySelectorAll('#samples .sample').length", 120)
            drill_ms = driver.execute_script("return performance.now() - window.__t0")
            driver.execute_script("window.__t0 = performance.now(); document.getElementById('drill-next').click()")
            wait_for(driver, "document.getElementById('drill-count').textContent.includes('page 2 of')", 120)
            next_ms = driver.execute_script("return performance.now() - window.__t0")
            driver.execute_script("window.__t0 = performance.now(); const s = document.getElementById('drill-filter');"
                                  "s.value = 'error'; s.dispatchEvent(new Event('change'))")
            wait_for(driver, "document.getElementById('drill-count').textContent.startsWith('" + str(args.samples // 50) + " of')", 120)
            filter_ms = driver.execute_script("return performance.now() - window.__t0")
            print(f"chromium (try {attempt + 1}): first contentful paint {paint[0]:.0f} ms, DOMContentLoaded "
                  f"{paint[1]:.0f} ms, load {paint[2]:.0f} ms (driver round trip {wall:.2f} s); drill-down of "
                  f"{args.samples} samples {drill_ms:.0f} ms, next page {next_ms:.0f} ms, error filter {filter_ms:.0f} ms; "
                  f"{driver.find_element('id', 'drill-count').text}")
            loads.append({"paint": paint[0], "load": paint[2], "drill": drill_ms, "next": next_ms, "filter": filter_ms})
    markdown_table(TITLE, *results_table(args.samples, args.wordy, samples_bytes, board.stat().st_size, build_s, loads))


if __name__ == "__main__":
    main()
