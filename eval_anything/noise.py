"""`eval-anything noise`: how much scores move with the seed and the batch size alone.

The same model is evaluated on the same tasks under every combination of the seeds and batch
sizes given. The first combination is an ordinary run (the one `eval-anything run` with the same
arguments reuses); the others go under `<that run>/noise/`. The noise floor of a task's metric is
the range (largest minus smallest score) over the combinations; it is written with every score
to `<run>/noise.json`, where `eval-anything gate` finds it and uses it as its default --max-drop.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from eval_anything.datamodel import Status
from eval_anything.errors import UsageError
from eval_anything.flags import add_arguments, flag
from eval_anything.models import backend_traits, backends_where
from eval_anything.settings import EvaluationArguments
from eval_anything.stats import sample_std

NOISE_FILE = "noise.json"
FORMAT_VERSION = 1
AGGREGATE = "all tasks"
"""The macro mean of each task's first metric, as the gate's aggregate."""


@dataclass(frozen=True)
class NoiseArguments(EvaluationArguments):
    """The flags of `eval-anything noise`: an evaluation, and what varies across its runs."""

    seeds: int = field(default=3, metadata=flag(
        "--seeds", type=int, metavar="N", help="seeds seed, seed+1, ..., seed+N-1 (default: 3)"))
    batch_sizes: str = field(default="8,1", metadata=flag(
        "--batch-sizes", metavar="B,...",
        help=f"batch sizes to try, {'/'.join(backends_where(lambda t: t.batch_size_flag))} models only (default: 8,1)"))


@dataclass(frozen=True)
class Configuration:
    seed: int
    batch_size: str | None
    """None where the backend sets its own (only those with `BackendTraits.batch_size_flag` take one)."""

    @property
    def label(self) -> str:
        return f"seed{self.seed}" + (f"-batch{self.batch_size}" if self.batch_size else "")


def configurations(seed: int, seeds: int, batch_sizes: Sequence[str] | None) -> list[Configuration]:
    return [Configuration(s, b) for s, b in itertools.product(range(seed, seed + seeds), batch_sizes or [None])]


def first_metrics(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each complete task's metric values by task then metric."""
    scores: dict[str, dict[str, float]] = {}
    for task, outcome in results["tasks"].items():
        values = {name: m["value"] for name, m in (outcome.get("metrics") or {}).items() if m.get("value") is not None}
        if outcome.get("status") == Status.COMPLETE and values:
            scores[task] = values
    if len(scores) > 1:
        scores[AGGREGATE] = {"macro mean": sum(next(iter(v.values())) for v in scores.values()) / len(scores)}
    return scores


def noise_floor(per_configuration: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per task and metric: the scores of every configuration, their range (the floor) and spread."""
    floors: dict[str, dict[str, dict[str, Any]]] = {}
    for task in per_configuration[0]:
        for metric in per_configuration[0][task]:
            values = [scores[task][metric] for scores in per_configuration if metric in scores.get(task, {})]
            if len(values) < len(per_configuration):
                continue  # a configuration that did not score it: no floor from partial evidence
            floors.setdefault(task, {})[metric] = {"floor": round(max(values) - min(values), 6),
                                                   "sd": round(sample_std(values), 6), "values": values}
    return floors


def read_noise(run_dir: Path) -> dict[str, Any] | None:
    """The noise floor stored in a run directory, or None when none was measured there."""
    path = Path(run_dir) / NOISE_FILE
    if not path.is_file():
        return None
    try:
        noise = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UsageError(f"{path}: not valid JSON ({exc}); measure again with `eval-anything noise`") from None
    if not isinstance(noise, dict) or noise.get("format_version") != FORMAT_VERSION or "tasks" not in noise:
        raise UsageError(f"{path}: not a noise floor of this version; measure again with `eval-anything noise`")
    return noise


def measure(arguments: NoiseArguments) -> tuple[Path, dict[str, Any]]:
    from eval_anything.console import RichProgress, console
    from eval_anything.runner import evaluate
    from eval_anything.settings import resolve_evaluation, with_batch_size

    spec, tasks, settings = resolve_evaluation(arguments)
    batch_sizes = _batch_sizes(arguments.batch_sizes, spec.backend)
    combos = configurations(arguments.seed, arguments.seeds, batch_sizes)
    if len(combos) < 2:
        raise UsageError("a noise floor needs at least two configurations: --seeds 2 or more, or two --batch-sizes")
    runs, scores, reference_dir = [], [], None
    for combo in combos:
        combo_spec = with_batch_size(spec, combo.batch_size) if combo.batch_size else spec
        output_dir = settings.output_dir if reference_dir is None else reference_dir / "noise" / combo.label
        console.print(f"[bold]noise[/bold]: {combo.label} ({len(runs) + 1}/{len(combos)})")
        report = evaluate(combo_spec, tasks, replace(settings, seed=combo.seed, output_dir=output_dir), RichProgress())
        if not report.ok:
            raise UsageError(f"the {combo.label} run has errors ({report.run_dir}); fix them and run again "
                             "(finished samples are kept)")
        reference_dir = reference_dir or report.run_dir
        runs.append({"seed": combo.seed, "batch_size": combo.batch_size, "run_dir": str(report.run_dir)})
        scores.append(first_metrics(report.results))
    noise = {"format_version": FORMAT_VERSION,
             "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
             "varied": ["seed"] + (["batch_size"] if batch_sizes else []),
             "definition": "floor = largest minus smallest score over the configurations",
             "configurations": [{**run, "scores": s} for run, s in zip(runs, scores)],
             "tasks": noise_floor(scores)}
    assert reference_dir is not None
    (reference_dir / NOISE_FILE).write_text(json.dumps(noise, indent=2) + "\n", encoding="utf-8")
    return reference_dir, noise


def _batch_sizes(batch_sizes: str, backend: str) -> list[str] | None:
    if not backend_traits(backend).batch_size_flag:
        from eval_anything.console import console

        console.print(f"noise: the {backend} backend sets its own batching; only the seed is varied")
        return None
    sizes = [b.strip() for b in batch_sizes.split(",") if b.strip()]
    for size in sizes:
        if size != "auto" and not size.isdigit():
            raise UsageError(f"--batch-sizes: {size!r} is neither a number nor 'auto'")
    return sizes


def _table(noise: dict[str, Any]):
    from rich.table import Table

    table = Table(title="noise floor (range over configurations)")
    for column in ("task", "metric", "floor", "sd", "scores"):
        table.add_column(column, justify="right" if column in ("floor", "sd") else "left")
    for task, metrics in noise["tasks"].items():
        for metric, entry in metrics.items():
            table.add_row(task, metric, f"{entry['floor']:.4f}", f"{entry['sd']:.4f}",
                          " ".join(f"{v:.4f}" for v in entry["values"]))
    return table


EXAMPLES = """examples:
  eval-anything noise --tasks arith_mini --seeds 3 --batch-sizes 8,1 --temperature 0.7
  eval-anything gate --baseline RUN --candidate runs/other   # --max-drop defaults to RUN's noise floor

The first configuration (the first seed and batch size) is an ordinary run directory: the floor is
stored there as noise.json, and later runs with the same arguments reuse that run."""


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "noise", help="measure how much scores move with seed and batch size alone",
        description="Evaluate the same model on the same tasks under several seeds and batch sizes and store "
                    "each task's noise floor (the range of its scores) in the run directory, for the gate.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, NoiseArguments)
    parser.set_defaults(handler=run_noise)


def run_noise(args: argparse.Namespace) -> int:
    from eval_anything.console import stdout_console

    arguments = NoiseArguments.from_namespace(args, args.argv)
    if arguments.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, not {arguments.seeds}")
    run_dir, noise = measure(arguments)
    out = stdout_console()
    out.print(_table(noise))
    out.print(f"noise floor written to {run_dir / NOISE_FILE}; `eval-anything gate --baseline {run_dir} ...` "
              "uses it as --max-drop")
    return 0
