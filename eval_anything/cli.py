"""The `eval-anything` command line. Heavy libraries load only inside `run`, on demand."""
from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
import threading
import time
from typing import Sequence

from eval_anything import __version__
from eval_anything.flags import add_arguments
from eval_anything.settings import RUN_COMMAND, RunArguments, add_task_source

COMMAND_MODULES: tuple[str, ...] = ("eval_anything.leaderboard.command", "eval_anything.gate",
                                   "eval_anything.align.command", "eval_anything.validate", "eval_anything.verify",
                                   "eval_anything.export", "eval_anything.data_bundles", "eval_anything.noise")
"""Modules adding further subcommands: each has `add_command(subparsers)`, which adds its parser
and sets `handler` (a function of the parsed args returning the exit code). Keep them light to
import: heavy libraries load inside the handler."""

RUN_EXAMPLES = """examples:
  eval-anything run                                   # embedded SmolLM2 on every built-in task
  eval-anything run --tasks arith_mini --limit 8      # one task, first 8 items
  eval-anything run --model hf:./my-llava --tasks image --batch-size auto
  eval-anything run --model openai:gpt-4o-mini --model-args base_url=http://127.0.0.1:8000/v1,concurrency=16
  eval-anything run --model replay:preds.jsonl --tasks shapes_color

Rerunning the same command resumes an interrupted run in the same run directory and
makes no model calls for samples already finished."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eval-anything", description="Evaluate all-modality models.")
    parser.add_argument("--version", action="version", version=f"eval-anything {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(RUN_COMMAND, help="evaluate a model on tasks", epilog=RUN_EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Evaluate a model on tasks and write a run directory.")
    add_arguments(run, RunArguments)
    run.set_defaults(handler=_run)

    listing = commands.add_parser("list", help="list tasks and groups",
                                  description="List every task: version, input modalities, items, groups.")
    add_task_source(listing)
    listing.set_defaults(handler=_list)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_command(commands)
    return parser


def entry() -> None:
    """The `eval-anything` command and `python -m eval_anything`: `main()`, then exit.

    The heap is frozen first: at exit the interpreter's last garbage collections would otherwise
    walk every object torch and transformers made, about 1 s of each command's time on 2 cores.
    atexit handlers, flushing and module teardown still run as usual."""
    code = main()
    gc.freeze()
    if code != 0:
        _end_stray_threads(code)
    sys.exit(code)


STRAY_THREAD_GRACE_S = 10.0
"""How long a failed command waits at exit for threads a library left running."""


def _end_stray_threads(code: int) -> None:
    """Exit now if, after a failure, a thread that is neither a daemon nor an executor's worker
    (joined by their executors at exit) is still running after a grace period: the interpreter
    would wait for it forever, and a batch job must end."""
    deadline = time.monotonic() + STRAY_THREAD_GRACE_S
    for thread in _stray_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    left = _stray_threads()
    if left:
        print(f"eval-anything: internal error: thread(s) {', '.join(t.name for t in left)} still running at "
              "exit; exiting without them. This is a bug: please report it with the command", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _stray_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon
            and t.is_alive() and not t.name.startswith(("ThreadPoolExecutor", "asyncio_"))]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv) if argv is not None else sys.argv[1:]
    args = build_parser().parse_args(argv)
    args.argv = argv
    from eval_anything.console import exit_code_of

    return exit_code_of(lambda: args.handler(args))


def _list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from eval_anything.console import stdout_console
    from eval_anything.tasks import Catalog

    catalog = Catalog(args.include_path)
    table = Table(title="tasks")
    for column in ("task", "version", "modalities", "items", "groups", "protocols", "description"):
        table.add_column(column)
    for name in sorted(catalog.tasks):
        task = catalog.tasks[name]
        table.add_row(name, str(task.version), ",".join(sorted(m.value for m in task.modalities)),
                      str(task.count()), ",".join(task.config.tags), ",".join(task.config.protocol_names) or "-",
                      task.config.description)
    console = stdout_console()
    console.print(table)
    groups = catalog.groups()
    console.print("groups: all, " + ", ".join(f"{g} ({len(groups[g])})" for g in sorted(groups)))
    return 0


def _run(args: argparse.Namespace) -> int:
    from eval_anything.console import RichProgress, report_run
    from eval_anything.interrupts import graceful_stop
    from eval_anything.runner import evaluate
    from eval_anything.settings import resolve_evaluation

    with graceful_stop():
        arguments = RunArguments.from_namespace(args, args.argv)
        if arguments.from_bundle is not None:  # rerun an exported run: its tasks, settings and command
            from eval_anything.export import apply_bundle

            arguments = apply_bundle(arguments)
        spec, tasks, settings = resolve_evaluation(arguments, repeats=arguments.repeats)
        report = evaluate(spec, tasks, settings, RichProgress())
    return report_run(report)
