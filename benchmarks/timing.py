"""What the benchmark scripts share: timing a command that must succeed."""
from __future__ import annotations

import subprocess
import time


def timed(command: list[str], env: dict[str, str]) -> float:
    """Wall time of `command`; its output is shown and the benchmark stops if it fails."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed
