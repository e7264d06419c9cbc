"""The `eval-anything` command line. Heavy libraries load only inside `run`, on demand."""
from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from eval_anything.judges.engine import JudgeSettings
    from eval_anything.models import ModelSpec
    from eval_anything.runner import RunSettings
    from eval_anything.tasks import Task

from eval_anything import __version__

COMMAND_MODULES: tuple[str, ...] = ("eval_anything.leaderboard.command", "eval_anything.gate",
                                   "eval_anything.align.command", "eval_anything.validate", "eval_anything.verify",
                                   "eval_anything.export", "eval_anything.bundle", "eval_anything.noise")
"""Modules adding further subcommands: each has `add_command(subparsers)`, which adds its parser
and sets `handler` (a function of the parsed args returning the exit code). Keep them light to
import: heavy libraries load inside the handler."""

JUDGE_DEFAULTS = (256, 2)
"""Longest reply and re-asks of a named judge."""
WEAK_JUDGE_DEFAULTS = (96, 1)
"""The same for the embedded 135M default judge, which rarely keeps to a format however long it talks."""

RUN_EXAMPLES = """examples:
  eval-anything run                                   # embedded SmolLM2 on every built-in task
  eval-anything run --tasks arith_mini --limit 8      # one task, first 8 items
  eval-anything run --model hf:./my-llava --tasks image --batch-size auto
  eval-anything run --model openai:gpt-4o-mini --model-args base_url=http://127.0.0.1:8000/v1,concurrency=16
  eval-anything run --model replay:preds.jsonl --tasks shapes_color

Rerunning the same command resumes an interrupted run in the same run directory and
makes no model calls for samples already finished."""


def _add_task_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--include-path", action="append", default=[], type=Path, metavar="DIR",
                        help="also load task YAML files from DIR (repeatable)")


def add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    """What says which model to evaluate on which tasks, how, and who judges: shared by `run` and
    the commands that run evaluations (`noise`)."""
    parser.add_argument("--model", metavar="[BACKEND:]REF",
                        help="backend and model: hf:DIR, openai:NAME, replay:FILE.jsonl, embedded:smollm2-135m-instruct; "
                             "a directory alone means hf, a .jsonl file replay (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--model-args", metavar="K=V,...", default="",
                        help="backend arguments, e.g. base_url=http://127.0.0.1:8000/v1,concurrency=8 (openai), "
                             "dtype=bfloat16,device=auto,video_frames=8,batching=static (hf; batching=continuous, the default, "
                             "runs greedy text-only requests through transformers' continuous batching). API keys come from environment "
                             "variables (api_key_env=NAME), never from here")
    parser.add_argument("--tasks", default="all", metavar="all|NAME,...",
                        help="comma-separated task names, group names, task YAML paths, data files (.jsonl, .csv, .parquet: a task "
                             "inferred from column names), or 'all' (default: all)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N items of each task")
    parser.add_argument("--output-dir", type=Path, default=Path("runs"), metavar="DIR",
                        help="where run directories go (default: runs)")
    parser.add_argument("--batch-size", default=None, metavar="N|auto",
                        help="hf backends: requests per forward pass; 'auto' starts at 32 and halves on out-of-memory "
                             "(default: auto)")
    parser.add_argument("--seed", type=int, default=1234, help="seed for sampling and anything random (default: 1234)")
    parser.add_argument("--max-new-tokens", type=int, metavar="N", help="override every task's generation length")
    parser.add_argument("--temperature", type=float, metavar="T",
                        help="override every task's sampling temperature (0 = greedy, the tasks' usual setting)")
    parser.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="run the AMU/AMG suite on a local copy of the published datasets in DIR (folders "
                             "EvalAnything-AMU, EvalAnything-Selection_Synergy, EvalAnything-InstructionFollowing) "
                             "instead of the embedded mini-suite")
    parser.add_argument("--protocol", default=None, metavar="NAME",
                        help="how the AMU/AMG suite prompts and scores: 'paper' (the default) reproduces the original "
                             "authors' scripts (judge messages, sampling, parsers, aggregation); 'extended' is ours "
                             "(the judge also sees the question and the media). Recorded with the run; gate and "
                             "verify refuse to compare runs of different protocols")
    parser.add_argument("--generator", default=None, metavar="MODALITY=NAME,...",
                        help="render media instructions of any-to-any answers (AMG tasks), e.g. audio=espeak "
                             "(default: audio=espeak when espeak-ng is installed; '' for none). A modality "
                             "nothing renders is not applicable for the scores that need it")
    judge = parser.add_argument_group("judges", "for tasks scored by a model judge")
    judge.add_argument("--judge", metavar="[KEY=][BACKEND:]REF|FILE.yaml", action="append",
                       help="the judge model, any backend: openai:gpt-4o, hf:DIR, ... (default: the embedded "
                            "SmolLM2, labelled a weak judge in the results). Repeatable: KEY=[BACKEND:]REF names "
                            "another judge for the queries of KEY: a modality, image, audio or video (a query "
                            "goes to the judge of the media it carries, video first, then audio, then image; "
                            "text-only queries to the default judge), or a task name (all its queries; a task "
                            "beats a modality). E.g. --judge openai:gpt-4o --judge audio=hf:DIR --judge "
                            "video=hf:DIR. FILE.yaml maps keys (default, image, audio, video, TASK) to "
                            "[BACKEND:]REF or {model: [BACKEND:]REF, args: {K: V}}")
    judge.add_argument("--judge-args", metavar="[KEY:]K=V,...", action="append",
                       help="judge backend arguments, as --model-args (e.g. base_url=...,api_key_env=JUDGE_KEY), "
                            "for the default judge; KEY:K=V,... for the judge named with --judge KEY=... (e.g. "
                            "--judge-args audio:base_url=http://127.0.0.1:8001/v1,concurrency=4). Repeatable; "
                            "each judge gets only its own")
    judge.add_argument("--judge-concurrency", type=int, metavar="N",
                       help="judge requests in flight at once (openai judges; default 8)")
    judge.add_argument("--judge-max-tokens", type=int, default=None, metavar="N",
                       help=f"longest judge reply (default {JUDGE_DEFAULTS[0]}; {WEAK_JUDGE_DEFAULTS[0]} for the "
                            "embedded default judge)")
    judge.add_argument("--judge-retries", type=int, default=None, metavar="N",
                       help="re-ask a judge whose reply cannot be parsed up to N times, then record a judge "
                            f"error with the raw replies (default {JUDGE_DEFAULTS[1]}; {WEAK_JUDGE_DEFAULTS[1]} "
                            "for the embedded default judge)")
    judge.add_argument("--judge-price", metavar="IN,OUT",
                       help="USD per million input and output judge tokens, to report cost (e.g. 2.5,10)")
    judge.add_argument("--judge-cache", default=None, metavar="PATH|off",
                       help="the judge cache shared across runs (default: ~/.cache/eval-anything/judge-cache.sqlite)")
    judge.add_argument("--reward-model", metavar="DIR", default=None,
                       help="the multimodal reward model that scores modality synergy under protocol paper (the "
                            "paper's PKU-Alignment/AnyRewardModel, or any local transformers model with a score "
                            "head); without one, paper-protocol synergy is not applicable, with the reason")
    _add_task_source(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eval-anything", description="Evaluate all-modality models.")
    parser.add_argument("--version", action="version", version=f"eval-anything {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="evaluate a model on tasks", epilog=RUN_EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Evaluate a model on tasks and write a run directory.")
    add_evaluation_arguments(run)
    run.add_argument("--repeats", type=int, default=1, metavar="K",
                     help="generate each item K times (repeat r with seed + r) and score the mean per item; results "
                          "add a 95%% interval over items and repeats and how much repeats of one item vary "
                          "(default: 1). Greedy tasks vary little: sample with --temperature")
    run.add_argument("--from", dest="from_bundle", type=Path, metavar="BUNDLE.tar.gz",
                     help="rerun exactly the evaluation packed by `eval-anything export` (its tasks, settings "
                          "and command; --model, --data-dir and --output-dir given here win)")
    run.set_defaults(handler=_run)

    listing = commands.add_parser("list", help="list tasks and groups",
                                  description="List every task: version, input modalities, items, groups.")
    _add_task_source(listing)
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
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv) if argv is not None else sys.argv[1:]
    args = build_parser().parse_args(argv)
    args.argv = argv
    from eval_anything.models.base import BackendError
    from eval_anything.tasks import TaskFileError

    try:
        return args.handler(args)
    except (TaskFileError, KeyError, ValueError, FileNotFoundError) as exc:  # BundleError is a ValueError
        print(f"eval-anything: error: {exc}", file=sys.stderr)
        return 2
    except BackendError as exc:
        print(f"eval-anything: error: {exc}\nfinished samples are kept; rerun the same command to resume",
              file=sys.stderr)
        return 1


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


def _judge_settings(args: argparse.Namespace, tasks: Sequence["Task"] = ()) -> "JudgeSettings":
    from eval_anything.judges.engine import JudgeSettings
    from eval_anything.judges.naming import check_judge_keys, judge_entries
    from eval_anything.models import resolve_spec
    from eval_anything.models.embedded import NAME, cache_root

    entries = judge_entries(getattr(args, "judge", None) or [], getattr(args, "judge_args", None) or [])
    check_judge_keys(list(entries), [t.name for t in tasks], getattr(args, "include_path", []))

    def judge_spec(model: str | None, extra: dict[str, Any]) -> "ModelSpec":
        spec = resolve_spec(model or f"embedded:{NAME}", extra)
        if args.judge_concurrency is not None:
            key = "concurrency" if spec.backend == "openai" else "batch_size"
            spec = dataclasses.replace(spec, args={**spec.args, key: args.judge_concurrency})
        return spec

    default_model, default_args = entries.get("default", (None, {}))
    spec = judge_spec(default_model, default_args)
    routes = {key: judge_spec(model, extra) for key, (model, extra) in entries.items() if key != "default"}
    price = None
    if args.judge_price:
        try:
            price_in, price_out = (float(p) for p in args.judge_price.split(","))
        except ValueError:
            raise ValueError("--judge-price takes IN,OUT: USD per million input and output tokens") from None
        price = (price_in, price_out)
    cache = None if args.judge_cache == "off" else Path(args.judge_cache or cache_root() / "judge-cache.sqlite")
    weak = default_model is None
    max_tokens, retries = WEAK_JUDGE_DEFAULTS if weak and not routes else JUDGE_DEFAULTS
    return JudgeSettings(spec, weak_default=weak, seed=args.seed, price_per_million=price, cache_path=cache,
                         routes=routes,
                         reward_model=getattr(args, "reward_model", None),
                         max_new_tokens=args.judge_max_tokens if args.judge_max_tokens is not None else max_tokens,
                         parse_retries=args.judge_retries if args.judge_retries is not None else retries)


def evaluation_from_args(args: argparse.Namespace, **overrides: Any) -> tuple["ModelSpec", list["Task"], "RunSettings"]:
    """The model, tasks and run settings that `add_evaluation_arguments` describe."""
    from eval_anything.models import parse_model_args, resolve_spec
    from eval_anything.runner import RunSettings
    from eval_anything.tasks import Catalog

    if args.data_dir is not None:  # local published data: nothing may reach the network
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    spec = resolve_spec(args.model, parse_model_args(args.model_args))
    if args.batch_size is not None:
        spec = with_batch_size(spec, args.batch_size)
    tasks = [task.under(args.protocol) for task in Catalog(args.include_path).resolve(args.tasks)]
    if args.data_dir is not None:
        from eval_anything.suite.data_dir import with_published_data

        tasks = with_published_data(tasks, args.data_dir)
    settings = RunSettings(output_dir=args.output_dir, limit=args.limit, seed=args.seed,
                           max_new_tokens=args.max_new_tokens, command=("eval-anything", *args.argv),
                           judge=_judge_settings(args, tasks), generators=args.generator,
                           temperature=args.temperature, **overrides)
    if any(t.config.output_format == "tagged" for t in tasks):
        settings.generator_table()  # a misspelt generator fails here, before any model loads
    return spec, tasks, settings


def with_batch_size(spec: "ModelSpec", batch_size: str | int) -> "ModelSpec":
    if spec.backend not in ("hf", "embedded"):
        raise ValueError(f"--batch-size applies to hf models; the {spec.backend} backend sets its own "
                         "(e.g. --model-args concurrency=N for openai)")
    value = batch_size if batch_size == "auto" else int(batch_size)
    return dataclasses.replace(spec, args={**spec.args, "batch_size": value})


def _run(args: argparse.Namespace) -> int:
    from eval_anything.console import RichProgress, results_table, stdout_console
    from eval_anything.runner import evaluate

    if args.from_bundle is not None:  # rerun an exported run: its tasks, settings and command
        from eval_anything.export import apply_bundle

        apply_bundle(args)
    spec, tasks, settings = evaluation_from_args(args, repeats=args.repeats)
    report = evaluate(spec, tasks, settings, RichProgress())
    if not report.primary:  # another rank of a data-parallel run: rank 0 merges and reports
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
