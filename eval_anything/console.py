"""Terminal output: a progress bar per task, the results table, and the errors a user can fix."""
from __future__ import annotations

import sys
import traceback
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from eval_anything.runner import RunReport

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from eval_anything.datamodel import Status

console = Console(stderr=True)
"""Progress and messages; results tables go to standard output."""


def stdout_console() -> Console:
    plain = Console()
    return plain if plain.is_terminal else Console(width=140)


class RichProgress:
    """One bar per task, with done/total counts, elapsed time and ETA."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._current: Any = None

    def start(self, task: str, total: int, done: int) -> None:
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console)
        self._progress.start()
        self._current = self._progress.add_task(task, total=total, completed=done)

    def advance(self, count: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._current, count)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _format_value(metric: dict[str, Any]) -> str:
    value, stderr = metric.get("value"), metric.get("stderr")
    if value is None:
        return "—"
    text = f"{value:.4f} ± {stderr:.4f}" if stderr is not None else f"{value:.4f}"
    repeats = metric.get("repeats")
    if repeats and None not in repeats["ci95"]:
        low, high = repeats["ci95"]
        text += f" ({repeats['k']} repeats, 95% CI {low:.3f}–{high:.3f})"
    return text


def results_table(results: dict[str, Any]) -> Table:
    table = Table(title=f"eval-anything · {results['run_id']}", show_lines=False)
    for column in ("task", "version", "metric", "value ± stderr", "n", "errors", "no answer", "status"):
        table.add_column(column, justify="right" if column in ("n", "errors", "no answer") else "left")
    for name, outcome in results["tasks"].items():
        status = outcome["status"] if outcome["status"] == Status.COMPLETE else f"{outcome['status']}: {outcome.get('reason', '')}"
        metrics = outcome.get("metrics") or {"—": {}}
        for metric_name, metric in metrics.items():
            skipped = metric.get("not_applicable")
            note = f"{status}; n/a for {skipped['count']}: {skipped['reasons'][0]}" if skipped else status
            table.add_row(name, str(outcome.get("version", "")), metric_name, _format_value(metric),
                          str(metric.get("n", "")), str(metric.get("errors", "")),
                          str(metric.get("extraction_failures", "")), note)
        for key, by_scorer in (outcome.get("breakdown") or {}).items():
            for metric_name, cell in by_scorer.items():
                table.add_row(f"  ↳ {key}", "", metric_name, _format_value(cell), str(cell["n"]), "", "", "")
    for name, group in (results.get("groups") or {}).items():
        table.add_row(f"[bold]{name}[/bold] (group)", "", f"mean {group['metric']}", _format_value(group), "", "",
                      "", f"{group.get('status', '')}: {group['reason']}" if group.get("reason") else Status.COMPLETE.value)
    return table


def report_run(report: "RunReport") -> int:
    """Print a finished run's results (rank 0 only: the others write shards) and return the exit
    code of the command that ran it: 0, or 1 when a task ended in error."""
    if not report.primary:
        return 0 if report.ok else 1
    out = stdout_console()
    out.print(results_table(report.results))
    resumed = sum(report.resumed.values())
    judge = report.results.get("judge")
    if judge:
        cost = f", ${judge['cost_usd']:.4f}" if "cost_usd" in judge else ""
        weak = " (weak default judge)" if judge.get("weak_default") else ""
        out.print(f"judge {judge['backend']}:{judge['reference']}{weak}: {judge['calls']} calls, {judge['cached']} "
                  f"cached, {judge['input_tokens']}+{judge['output_tokens']} tokens{cost}, {judge['errors']} errors")
    out.print(f"run directory: {report.run_dir}  ·  generated {report.generated} requests"
                  + (f", resumed {resumed} finished samples" if resumed else ""))
    return 0 if report.ok else 1


BUG_REPORT = ("this is a bug in eval-anything, not in what you gave: please report it with the command "
              "and this traceback")


def exit_code_of(command: Callable[[], int]) -> int:
    """`command()`'s exit code. An error the user can fix is one line on stderr instead: code 2 for
    what they gave (tasks, arguments, files), 74 for a run directory that cannot be written, 75 for
    one in use (`--no-wait`), 1 for a model backend that failed; a stop signal exits 128 + its number
    (130 Ctrl-C, 143 SIGTERM). Any other exception is a bug: its traceback, and exit 1."""
    from eval_anything.errors import EXIT_FAILED, Interrupted
    from eval_anything.models.base import BackendError

    try:
        return command()
    except Interrupted as exc:
        print(f"eval-anything: {exc}; finished samples are kept: rerun the same command to resume", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("eval-anything: stopped by SIGINT; finished samples are kept: rerun the same command to resume",
              file=sys.stderr)
        return 130
    except BackendError as exc:
        print(f"eval-anything: error: {exc}\nfinished samples are kept; rerun the same command to resume",
              file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        code = user_error_code(exc)
        if code is None:
            traceback.print_exc()
            print(f"eval-anything: internal error: {type(exc).__name__}: {exc}\n{BUG_REPORT}", file=sys.stderr)
            return EXIT_FAILED
        print(f"eval-anything: error: {exc}", file=sys.stderr)
        return code


def user_error_code(exc: BaseException) -> int | None:
    """The exit code of an error the user can fix, or None for a bug. User errors are UserErrors,
    the ValueErrors and KeyErrors of types this package defines (each names what to fix), and a
    file the user named that does not exist; a bare ValueError or KeyError is a bug."""
    from eval_anything.errors import EXIT_USAGE, UserError

    if isinstance(exc, UserError):
        return exc.exit_code
    if isinstance(exc, (ValueError, KeyError)) and type(exc).__module__.startswith("eval_anything."):
        return EXIT_USAGE
    if type(exc) is FileNotFoundError:
        return EXIT_USAGE
    return None
