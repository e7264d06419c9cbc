"""`eval-anything gate`: fail CI when a candidate checkpoint regresses against a baseline run.

Runs are compared on the samples both scored (paired). Binary scores use McNemar's exact test
on the discordant pairs; other scores a paired bootstrap of the difference in the task's
declared aggregate (mean or median). The confidence interval is always the paired bootstrap
percentile interval. A task fails only when the drop is larger than ``--max-drop`` *and*
significant at ``--alpha``. The aggregate ("all tasks") is the unweighted mean over tasks of
each task's first metric, bootstrapped within tasks. No correction for multiple comparisons
is applied; lower ``--alpha`` for that. Runs are not comparable (exit 2) when a task's scoring
protocol, version, data hash or judge differs, or when they share no scored sample.

Reads run directories only; never imports torch, transformers or a backend.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape, quoteattr

from eval_anything.datamodel import Status
from eval_anything.flags import add_arguments, flag, from_namespace

PASS, REGRESSION, NOT_COMPARABLE = 0, 1, 2
"""Exit codes."""
AGGREGATE = "all tasks"
DEFAULT_MAX_DROP = 0.01
"""--max-drop when neither given nor measured (`eval-anything noise` on the baseline)."""


@dataclass(frozen=True)
class GateSettings:
    """What to gate, and how strictly: the flags of `eval-anything gate`."""

    baseline: Path = field(metadata=flag(
        "--baseline", required=True, type=Path, metavar="RUN", help="the reference run directory"))
    candidate: Path = field(metadata=flag(
        "--candidate", required=True, type=Path, metavar="RUN", help="the run directory to gate"))
    tasks: str | None = field(default=None, metadata=flag(
        "--tasks", metavar="NAME,...", help="gate only these tasks (default: every task of the baseline)"))
    max_drop: float | None = field(default=None, metadata=flag(
        "--max-drop", type=float, metavar="X",
        help="largest drop tolerated, in the metric's units (default: the baseline's noise floor "
             f"per task when `eval-anything noise` stored one in it, else {DEFAULT_MAX_DROP:g})"))
    alpha: float = field(default=0.05, metadata=flag(
        "--alpha", type=float, help="significance level (default: 0.05)"))
    errors_as_wrong: bool = field(default=False, metadata=flag(
        "--errors-as-wrong", action="store_true",
        help="count samples the candidate errored on (and the baseline scored) as 0 instead of "
             "leaving them out; use when errors come from the checkpoint, not the infrastructure"))
    resamples: int = field(default=2000, metadata=flag(
        "--resamples", type=int, metavar="N", help="bootstrap resamples (default: 2000)"))
    seed: int = field(default=0, metadata=flag("--seed", type=int, help="bootstrap seed (default: 0)"))
    markdown: Path | None = field(default=None, metadata=flag(
        "--markdown", type=Path, metavar="FILE", help="write a markdown summary (for a PR comment)"))
    junit: Path | None = field(default=None, metadata=flag(
        "--junit", type=Path, metavar="FILE", help="write JUnit XML (for CI test reports)"))


class NotComparable(Exception):
    """The runs cannot be compared (different task versions or data, nothing shared...)."""


@dataclass
class Comparison:
    """One gated quantity: a task's metric, or the aggregate over tasks."""

    task: str
    metric: str
    n: int
    baseline: float
    candidate: float
    ci: tuple[float, float]
    p_value: float
    test: str
    regression: bool = False
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    draws: Any = None  # bootstrap draws of the difference, for the aggregate

    @property
    def diff(self) -> float:
        return self.candidate - self.baseline

    @property
    def name(self) -> str:
        return self.task if self.task == AGGREGATE else f"{self.task}/{self.metric}"


@dataclass(frozen=True)
class MaxDrop:
    """The drop tolerated per task and metric: one value given, or the baseline's noise floor."""

    default: float = DEFAULT_MAX_DROP
    measured: dict[tuple[str, str], float] = field(default_factory=dict)
    source: str = ""
    """Where the values come from, said in every report."""

    def of(self, task: str, metric: str) -> float:
        return self.measured.get((task, metric), self.default)

    @classmethod
    def from_noise(cls, baseline: Path) -> "MaxDrop":
        """The noise floor `eval-anything noise` stored in the baseline run, else the default."""
        from eval_anything.noise import NOISE_FILE, read_noise

        noise = read_noise(baseline)
        if noise is None:
            return cls(source=f"the default: no {NOISE_FILE} in the baseline, which `eval-anything noise` measures")
        measured = {(task, metric): float(entry["floor"])
                    for task, metrics in noise["tasks"].items() for metric, entry in metrics.items()}
        varied = " and ".join(noise.get("varied", ["seed"]))
        return cls(measured=measured, source=f"the baseline's noise floor ({baseline / NOISE_FILE}: range over "
                                             f"{len(noise.get('configurations', []))} runs varying {varied}), "
                                             f"per task; {DEFAULT_MAX_DROP:g} where none was measured")

    def describe(self) -> str:
        if self.measured:
            return f"max-drop from {self.source}"
        return f"max-drop {self.default:g}" + (f" ({self.source})" if self.source else "")


@dataclass
class GateReport:
    baseline: str
    candidate: str
    max_drop: MaxDrop
    alpha: float
    comparisons: list[Comparison] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def exit_code(self) -> int:
        if self.error:
            return NOT_COMPARABLE
        return REGRESSION if any(c.regression for c in self.comparisons) else PASS

    @property
    def verdict(self) -> str:
        return {PASS: "PASS", REGRESSION: "REGRESSION", NOT_COMPARABLE: "NOT COMPARABLE"}[self.exit_code]


# ---------- statistics ----------

def mcnemar_exact(losses: int, wins: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs (binomial, p = 1/2)."""
    n = losses + wins
    if n == 0:
        return 1.0
    k = min(losses, wins)
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top) * sum(math.exp(v - top) for v in logs)
    return min(1.0, 2.0 * tail)


def paired_bootstrap(base, cand, statistic: str, resamples: int, seed: int):
    """Draws of statistic(candidate) - statistic(baseline), resampling samples with replacement."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(base)
    chunk = max(1, min(resamples, 4_000_000 // max(n, 1)))
    draws = []
    diff = cand - base
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        if statistic == "mean":
            draws.append(diff[idx].mean(axis=1))
        else:
            draws.append(np.median(cand[idx], axis=1) - np.median(base[idx], axis=1))
    return np.concatenate(draws)


def bootstrap_p(draws) -> float:
    """Two-sided p-value of 'no difference' from bootstrap draws (twice the smaller tail at 0)."""
    import numpy as np

    below, above = int(np.sum(draws <= 0)), int(np.sum(draws >= 0))
    return min(1.0, 2.0 * (min(below, above) + 1) / (len(draws) + 1))  # never 0 from finitely many draws


def _percentile_ci(draws, alpha: float) -> tuple[float, float]:
    import numpy as np

    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


# ---------- comparing runs ----------

def _check_comparable(task: str, base_run, cand_run) -> None:
    """Raises NotComparable unless the task was defined, and scored, the same way in both runs."""
    base, cand = base_run.tasks[task], cand_run.tasks[task]
    protocols = base_run.protocol(task), cand_run.protocol(task)
    if None not in protocols and protocols[0] != protocols[1]:  # a run from before protocols has none: as before
        raise NotComparable(f"task {task}: the baseline was scored under protocol {protocols[0]!r}, the candidate "
                            f"under {protocols[1]!r}; rerun one with --protocol {protocols[0]} or --protocol "
                            f"{protocols[1]} so that both use the same")
    for key, what in (("version", "task versions"), ("hash", "task data hashes")):
        if base.get(key) != cand.get(key):
            raise NotComparable(f"{task}: different {what} (baseline {base.get(key)!r}, candidate {cand.get(key)!r}); "
                                "rerun both on the same task definition and data")


def _scores(run, task: str, metric: str) -> tuple[dict[str, float], set[str]]:
    """Scored samples' values by id, and the ids of samples whose score is an error."""
    values, errors = {}, set()
    for record in run.iter_samples(task):
        score = (record.get("scores") or {}).get(metric)
        if score is None or score.get("not_applicable"):  # e.g. a suite item this model cannot answer
            continue
        if score.get("error") is None and isinstance(score.get("value"), (int, float)):
            values[str(record["id"])] = float(score["value"])
        else:
            errors.add(str(record["id"]))
    return values, errors


def _decide(c: Comparison, max_drop: float, alpha: float) -> None:
    drop = -c.diff
    level = f"{100 * (1 - alpha):g}% CI [{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]"
    stats = f"{c.test} p={c.p_value:.3g}"
    change = f"{c.baseline:.4f} -> {c.candidate:.4f} ({c.diff:+.4f}, n={c.n} paired; {level})"
    if drop > max_drop and c.p_value < alpha:
        c.regression = True
        c.reason = f"REGRESSION: {change}; drop {drop:.4f} > max-drop {max_drop:g} and significant ({stats} < alpha {alpha:g})"
    elif drop > max_drop:
        c.reason = f"pass: {change}; drop {drop:.4f} > max-drop {max_drop:g} but not significant ({stats} >= alpha {alpha:g})"
    elif drop > 0:
        c.reason = f"pass: {change}; drop {drop:.4f} within max-drop {max_drop:g} ({stats})"
    else:
        c.reason = f"pass: {change}; no drop ({stats})"


def _compare_metric(task: str, metric: str, aggregate: str, base_run, cand_run, gate: _Gating) -> Comparison | None:
    import numpy as np

    base_values, base_errors = _scores(base_run, task, metric)
    cand_values, cand_errors = _scores(cand_run, task, metric)
    new_errors = sorted(cand_errors & base_values.keys())
    if gate.settings.errors_as_wrong:  # a sample the candidate failed on, that the baseline scored, counts as 0
        cand_values.update(dict.fromkeys(new_errors, 0.0))
    shared = sorted(base_values.keys() & cand_values.keys())
    if not base_values and not cand_values:
        return None  # nothing scored on either side (e.g. a scorer that applies to none of the items)
    if not shared:
        raise NotComparable(f"{task}/{metric}: no samples scored in both runs "
                            f"(baseline {len(base_values)}, candidate {len(cand_values)})")
    base = np.array([base_values[i] for i in shared])
    cand = np.array([cand_values[i] for i in shared])
    statistic = "median" if aggregate == "median" else "mean"
    reduce = np.median if statistic == "median" else np.mean
    seed = gate.settings.seed + sum(map(ord, f"{task}/{metric}"))
    draws = paired_bootstrap(base, cand, statistic, gate.settings.resamples, seed)
    binary = statistic == "mean" and bool(np.isin(base, (0.0, 1.0)).all() and np.isin(cand, (0.0, 1.0)).all())
    if binary:
        losses = int(np.sum((base == 1) & (cand == 0)))
        wins = int(np.sum((base == 0) & (cand == 1)))
        p_value, test = mcnemar_exact(losses, wins), f"McNemar exact ({losses} lost, {wins} gained)"
    else:
        p_value, test = bootstrap_p(draws), f"paired bootstrap of the {statistic} ({gate.settings.resamples} resamples)"
    comparison = Comparison(task, metric, len(shared), float(reduce(base)), float(reduce(cand)),
                            _percentile_ci(draws, gate.settings.alpha), p_value, test, draws=draws)
    if aggregate == "weighted_mean":
        comparison.notes.append("gated on the unweighted mean over items; the metric itself weights items "
                                "(e.g. by their question count)")
    unshared = len(base_values) + len(cand_values) - 2 * len(shared)
    if unshared:
        comparison.notes.append(f"{unshared} samples scored in only one run are left out")
    if new_errors:
        comparison.notes.append(f"the candidate errored on {len(new_errors)} samples the baseline scored ("
                                + ("counted as 0: --errors-as-wrong" if gate.settings.errors_as_wrong else
                                   "left out; --errors-as-wrong counts them as 0") + ")")
    _decide(comparison, gate.max_drop.of(task, metric), gate.settings.alpha)
    return comparison


def _aggregate(firsts: list[Comparison], gate: _Gating) -> Comparison:
    import numpy as np

    draws = np.mean([c.draws for c in firsts], axis=0)
    p_value = bootstrap_p(draws)
    comparison = Comparison(AGGREGATE, "macro mean of each task's first metric", sum(c.n for c in firsts),
                            float(np.mean([c.baseline for c in firsts])), float(np.mean([c.candidate for c in firsts])),
                            _percentile_ci(draws, gate.settings.alpha), p_value,
                            f"paired bootstrap within tasks ({gate.settings.resamples} resamples)")
    _decide(comparison, gate.max_drop.of(AGGREGATE, "macro mean"), gate.settings.alpha)
    return comparison


def judge_of(run) -> tuple[str, ...] | None:
    """The judge by backend and name, and by commit for Hub weights (another revision is another judge)."""
    judge = run.results.get("judge") or run.manifest.get("judge")
    if not isinstance(judge, dict):
        return None
    named = (str(judge.get("backend")), str(judge.get("reference")))
    return (*named, str(judge["commit"])) if judge.get("commit") else named


def judge_label(identity: tuple[str, ...] | None) -> str:
    if identity is None:
        return "none"
    return f"{identity[0]}:{identity[1]}" + (f" at commit {identity[2]}" if len(identity) > 2 else "")


def _compare_task(task: str, base_run, cand_run, gate: _Gating, report: GateReport) -> list[Comparison]:
    """Every metric the task has in both runs; raises NotComparable when the runs cannot be paired."""
    if task not in base_run.tasks or task not in cand_run.tasks:
        where = "baseline" if task not in base_run.tasks else "candidate"
        raise NotComparable(f"{task}: no result in the {where} run" + ("" if gate.settings.tasks else " (use --tasks to gate a subset)"))
    base, cand = base_run.tasks[task], cand_run.tasks[task]
    _check_comparable(task, base_run, cand_run)
    statuses = (base.get("status"), cand.get("status"))
    if statuses == (Status.NOT_APPLICABLE, Status.NOT_APPLICABLE):
        report.skipped.append(f"{task}: not applicable to either model")
        return []
    if Status.NOT_APPLICABLE in statuses:
        which = "baseline" if statuses[0] == Status.NOT_APPLICABLE else "candidate"
        other = base if which == "baseline" else cand
        raise NotComparable(f"{task}: not applicable to the {which} model ({other.get('reason', 'no reason')})")
    if ("judge" in base or "judge" in cand) and judge_of(base_run) != judge_of(cand_run):
        judges = [judge_label(j) for j in (judge_of(base_run), judge_of(cand_run))]
        raise NotComparable(f"{task}: judged by different judges (baseline {judges[0]}, candidate {judges[1]})")
    metrics = [m for m in (base.get("metrics") or {}) if m in (cand.get("metrics") or {})]
    if not metrics:
        raise NotComparable(f"{task}: no metric in common")
    comparisons = []
    for metric in metrics:
        comparison = _compare_metric(task, metric, (base["metrics"][metric] or {}).get("aggregate", "mean"),
                                     base_run, cand_run, gate)
        if comparison is None:
            report.skipped.append(f"{task}/{metric}: no sample scored in either run")
            continue
        if Status.ERROR in statuses:
            comparison.notes.append(f"task status: baseline {statuses[0]}, candidate {statuses[1]}")
        comparisons.append(comparison)
    return comparisons


@dataclass(frozen=True)
class _Gating:
    """The settings of one gate, with the drop tolerated per task resolved."""

    settings: GateSettings
    max_drop: MaxDrop


def compare(settings: GateSettings) -> GateReport:
    from eval_anything.leaderboard.runs import RunDirError, load_run

    report = GateReport(str(settings.baseline), str(settings.candidate), MaxDrop(), settings.alpha)
    try:
        if not 0 < settings.alpha < 1:
            raise NotComparable(f"--alpha must be between 0 and 1, not {settings.alpha}")
        if settings.max_drop is not None and settings.max_drop < 0:
            raise NotComparable(f"--max-drop must be 0 or more, not {settings.max_drop}")
        try:
            max_drop = (MaxDrop(settings.max_drop) if settings.max_drop is not None
                        else MaxDrop.from_noise(Path(settings.baseline)))
        except ValueError as exc:
            raise NotComparable(str(exc)) from exc
        gate = _Gating(settings, max_drop)
        report.max_drop = max_drop
        if settings.resamples < 100:
            raise NotComparable(f"--resamples must be at least 100, not {settings.resamples}")
        try:
            base_run, cand_run = load_run(settings.baseline), load_run(settings.candidate)
        except RunDirError as exc:
            raise NotComparable(str(exc)) from exc
        tasks = ([t.strip() for t in settings.tasks.split(",") if t.strip()] if settings.tasks
                 else list(base_run.tasks))
        report.skipped += [f"{t}: only in the candidate run, not gated" for t in cand_run.tasks if t not in tasks
                           and t not in base_run.tasks]
        if not tasks:
            raise NotComparable("the baseline has no tasks")
        firsts = []
        for task in tasks:
            comparisons = _compare_task(task, base_run, cand_run, gate, report)
            report.comparisons += comparisons
            firsts += comparisons[:1]
        if len(firsts) > 1:
            report.comparisons.append(_aggregate(firsts, gate))
        if not report.comparisons:
            raise NotComparable("nothing to compare: " + "; ".join(report.skipped))
    except NotComparable as exc:
        report.error = f"not comparable: {exc}"
    return report


# ---------- reports ----------

def to_text(report: GateReport) -> str:
    lines = [f"gate: baseline {report.baseline}", f"      candidate {report.candidate}",
             f"      {report.max_drop.describe()}, alpha {report.alpha:g}"]
    for c in report.comparisons:
        lines.append(f"  {c.name}: {c.reason}")
        lines.extend(f"      note: {n}" for n in c.notes)
    lines.extend(f"  skipped {s}" for s in report.skipped)
    if report.error:
        lines.append(f"  {report.error}")
    lines.append(f"result: {report.verdict} (exit {report.exit_code})")
    return "\n".join(lines) + "\n"


def to_markdown(report: GateReport) -> str:
    def md(text: str) -> str:  # run paths and task names go into a PR comment: keep them literal
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")

    icon = {PASS: "✅", REGRESSION: "❌", NOT_COMPARABLE: "⚠️"}[report.exit_code]
    lines = [f"### {icon} eval-anything gate: {report.verdict}", "",
             f"Baseline `{md(report.baseline)}` vs candidate `{md(report.candidate)}`; fails on a drop larger than "
             f"the {md(report.max_drop.describe())} that is significant at alpha {report.alpha:g} (paired on shared samples).", ""]
    if report.error:
        lines += [f"**{md(report.error)}**", ""]
    if report.comparisons:
        level = f"{100 * (1 - report.alpha):g}% CI"
        lines += [f"| | task / metric | n | baseline | candidate | diff | {level} | test | p |", "|---|---|---:|---:|---:|---:|---|---|---:|"]
        for c in report.comparisons:
            lines.append(f"| {'❌' if c.regression else '✅'} | {md(c.name)} | {c.n} | {c.baseline:.4f} | {c.candidate:.4f} | "
                         f"{c.diff:+.4f} | [{c.ci[0]:+.4f}, {c.ci[1]:+.4f}] | {md(c.test)} | {c.p_value:.3g} |")
        lines.append("")
        lines += [f"- **{md(c.name)}**: {md(c.reason)}" + "".join(f"; {md(n)}" for n in c.notes) for c in report.comparisons]
    lines += [f"- skipped {md(s)}" for s in report.skipped]
    return "\n".join(lines) + "\n"


def to_junit(report: GateReport) -> str:
    cases = []
    for c in report.comparisons:
        body = f'<failure message={quoteattr(c.reason)} type="regression">{xml_escape(c.reason)}</failure>' if c.regression else ""
        out = "\n".join([c.reason, *c.notes])
        cases.append(f'  <testcase classname="eval-anything.gate" name={quoteattr(c.name)}>{body}'
                     f"<system-out>{xml_escape(out)}</system-out></testcase>")
    if report.error:
        cases.append(f'  <testcase classname="eval-anything.gate" name="comparability">'
                     f'<error message={quoteattr(report.error)} type="not-comparable">{xml_escape(report.error)}</error></testcase>')
    for s in report.skipped:
        cases.append(f'  <testcase classname="eval-anything.gate" name={quoteattr(s.split(":")[0])}><skipped message={quoteattr(s)}/></testcase>')
    failures = sum(c.regression for c in report.comparisons)
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            f'<testsuite name="eval-anything gate" tests="{len(cases)}" failures="{failures}" '
            f'errors="{int(bool(report.error))}" skipped="{len(report.skipped)}">\n' + "\n".join(cases) + "\n</testsuite>\n")


# ---------- CLI ----------

EXAMPLES = """examples:
  eval-anything gate --baseline runs/main --candidate runs/pr-123
  eval-anything gate --baseline runs/main --candidate runs/pr-123 --tasks arith_mini,shapes_color \\
      --max-drop 0.02 --alpha 0.01 --markdown gate.md --junit gate.xml

exit codes: 0 pass, 1 regression, 2 not comparable (different scoring protocols, task versions,
data hashes or judges, no shared samples, a task missing or not applicable on one side) or usage
error"""


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gate", help="fail when a candidate run regresses against a baseline run",
        description="Compare a candidate run with a baseline run on the samples both scored, per task and "
                    "over all tasks; fail only on a drop that is larger than --max-drop and significant at --alpha.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, GateSettings)
    parser.set_defaults(handler=run_gate)


def run_gate(args: argparse.Namespace) -> int:
    settings = from_namespace(GateSettings, args)
    report = compare(settings)
    (sys.stderr if report.error else sys.stdout).write(to_text(report))
    if settings.markdown:
        settings.markdown.write_text(to_markdown(report), encoding="utf-8")
    if settings.junit:
        settings.junit.write_text(to_junit(report), encoding="utf-8")
    return report.exit_code

