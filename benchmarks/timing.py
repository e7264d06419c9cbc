"""What the benchmark scripts share: timing a command that must succeed, and printing results as
the markdown block docs/performance.md records (date, machine, command, table)."""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence


def timed(command: list[str], env: dict[str, str]) -> float:
    """Wall time of `command`; its output is shown and the benchmark stops if it fails."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return None


def _memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def machine() -> str:
    """This machine in one line: architecture, cores, CPU model, total memory, load average."""
    parts = [f"{platform.machine() or 'unknown architecture'}, {os.cpu_count()} cores"]
    if model := _cpu_model():
        parts[0] += f" ({model})"
    if (memory := _memory_bytes()) is not None:
        parts.append(f"{memory / 2**30:.1f} GiB memory")
    try:
        parts.append("load average {:.2f} / {:.2f} / {:.2f} (1 / 5 / 15 min)".format(*os.getloadavg()))
    except (AttributeError, OSError):
        pass
    return ", ".join(parts)


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that ran this script, shell-quoted (OMP_NUM_THREADS in front when it is set)."""
    words = ["python", *(sys.argv if argv is None else argv)]
    if threads := os.environ.get("OMP_NUM_THREADS"):
        words.insert(0, f"OMP_NUM_THREADS={threads}")
    return shlex.join(words)


def today() -> str:
    """Today's date, UTC, YYYY-MM-DD."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def dated() -> str:
    """Today's date and the 1-minute load average as docs/performance.md's tables give them: '2026-11-30 (load 1.5)'."""
    try:
        return f"{today()} (load {os.getloadavg()[0]:.1f})"
    except (AttributeError, OSError):
        return today()


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]],
                   command: str | None = None, *, date: str | None = None, machine_line: str | None = None) -> str:
    """Print (and return) a markdown block for docs/performance.md: a heading with today's date (UTC),
    the machine, the command that produced it (default: this process's, from sys.argv), then the table.
    Cells are written as given (format the numbers before); `date` and `machine_line` are for checks."""
    if any(len(row) != len(columns) for row in rows):
        raise ValueError(f"every row needs {len(columns)} cells: {[len(row) for row in rows]}")
    lines = [f"### {title} ({date or today()})", "", f"Machine: {machine_line or machine()}", "",
             f"Command: `{command or command_line()}`", "",
             "| " + " | ".join(_cell(c) for c in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    text = "\n".join(lines)
    print(f"\n{text}\n", flush=True)
    return text


def spread(values: Sequence[float], form: str = "{:.2f}") -> str:
    """'low–high' of `values` written with `form`, or one number when they agree at that precision."""
    low, high = form.format(min(values)), form.format(max(values))
    return low if low == high else f"{low}–{high}"
