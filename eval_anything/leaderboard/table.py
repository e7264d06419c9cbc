"""The overview table: runs x (task, metric[, part]) cells, and its markdown, CSV and JSON forms.

Besides each task's metrics, these get a column each when results carry them:

* suite groups: ``results["groups"][name] = {"metric", "value", "stderr_over_dimensions", "parts":
  {task: value}, "reason"?}`` (AMU = the mean of its four dimension tasks);
* breakdowns of a task: ``entry["breakdown"][key][scorer] = {"value", "n"}`` (e.g. AMU by modality
  pair, AMG by chosen outputs), or a metric's own ``"breakdown"`` / ``"components"`` mapping
  ``{part: {"value", "stderr"?, "n"?} | number}``;
* composite components a scorer logs per sample (the S_AMG judge's ``S_i``, ``S_ij``, ``alpha``,
  ``terms``), averaged from the sample logs (``Run.derived_components``);
* a synergy metric's per-pair means, ``metric["synergy_ti" | "synergy_ta" | "synergy_ia"] = {"value",
  "n"}``, which also go beside the metric's own value (``cell["synergy"]``).

A task or metric entry's ``"judge"`` accounting, with the run's judge identity, goes beside its cells,
and so does the scoring protocol the task ran under (``cell["protocol"]``): runs that scored the same
task under different protocols are not comparable, which ``protocol_conflicts`` finds.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable

from eval_anything.datamodel import Status
from eval_anything.leaderboard.runs import Run

BREAKDOWN_KEYS = ("breakdown", "components")
SYNERGY_PREFIX = "synergy_"
"""Metric keys of a synergy scorer's per-pair means (synergy_ti, synergy_ta, synergy_ia): components."""


SUITE = "suite"
"""The ``group`` of a column holding a suite-level score (results["groups"])."""


@dataclass(frozen=True)
class Column:
    key: str
    task: str
    """The task, or for a suite column the group's name (e.g. amu)."""
    metric: str
    part: str | None = None
    group: str | None = None
    """Where the part comes from (``breakdown`` or ``components``), or ``suite`` for a suite group."""

    @property
    def label(self) -> str:
        if self.group == SUITE:
            return f"{self.task.upper()} ({self.metric}, mean of its parts)"
        return f"{self.task} / {self.metric}" + (f" / {self.part}" if self.part else "")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) or math.isinf(value) else float(value)


def _parts(run: Run, task: str, metric_name: str) -> Iterable[tuple[str, str, dict[str, Any]]]:
    """(group, part, {value, stderr?, n?}) for every breakdown and component of one task's metric."""
    entry = run.tasks.get(task) or {}
    metric = (entry.get("metrics") or {}).get(metric_name) or {}
    for group in BREAKDOWN_KEYS:
        parts = metric.get(group)
        if isinstance(parts, dict):
            for name, value in parts.items():
                yield group, str(name), value if isinstance(value, dict) else {"value": value}
    for name, value in _synergy(metric).items():
        yield "components", name, value
    by_key = entry.get("breakdown")
    if isinstance(by_key, dict):
        for key, scorers in by_key.items():
            if isinstance(scorers, dict) and isinstance(scorers.get(metric_name), dict):
                yield "breakdown", str(key), scorers[metric_name]
    if entry.get("status") != Status.NOT_APPLICABLE:
        for name, value in run.derived_components(task).get(metric_name, {}).items():
            yield "components", name, value


def _synergy(metric: Any) -> dict[str, dict[str, Any]]:
    """A synergy metric's per-pair means, {"synergy_ti": {"value", "n"}, ...}; {} for other metrics."""
    if not isinstance(metric, dict):
        return {}
    return {str(k): v for k, v in metric.items() if isinstance(k, str) and k.startswith(SYNERGY_PREFIX)
            and isinstance(v, dict) and "value" in v}


def protocols(runs: list[Run], column: "Column") -> list[str | None]:
    """Each run's protocol for a column's task (a suite column: its parts' protocols, when they agree)."""
    out = []
    for run in runs:
        if column.group == SUITE:
            group = (run.results.get("groups") or {}).get(column.task)
            parts = (group.get("parts") or {}) if isinstance(group, dict) else {}
            found = sorted({p for p in (run.protocol(str(t)) for t in parts) if p})
            out.append(" + ".join(found) if found else None)
        else:
            out.append(run.protocol(column.task) if column.task in run.tasks else None)
    return out


def protocol_conflicts(runs: list[Run]) -> dict[str, list[str]]:
    """Tasks (and suite groups) that runs scored under different protocols: {task: [protocols]}.
    A run without a protocol for the task (older runs, tasks with one way of scoring) conflicts with none."""
    out: dict[str, list[str]] = {}
    for column in columns(runs):
        if column.part is None and column.task not in out:
            found = sorted({p for p in protocols(runs, column) if p})
            if len(found) > 1:
                out[column.task] = found
    return out


def judge_name(judge: Any) -> str | None:
    """A one-line name for a judge record: backend:model (and template), or whatever identifies it."""
    if not judge:
        return None
    if not isinstance(judge, dict):
        return str(judge)
    inner = judge.get("judge") if isinstance(judge.get("judge"), dict) else judge
    name = inner.get("model") or inner.get("name") or inner.get("id")
    if isinstance(name, dict):
        name = name.get("reference") or name.get("name") or json.dumps(name, sort_keys=True)
    if not name and inner.get("reference"):
        name = f"{inner.get('backend', '?')}:{inner['reference']}"
    if not name:
        return None
    template = inner.get("template") or inner.get("prompt_template")
    name = f"{name} ({template})" if isinstance(template, str) and len(template) < 60 else str(name)
    return name + (" [weak default judge]" if judge.get("weak_default") or inner.get("weak_default") else "")


def run_judge(run: Run) -> dict[str, Any]:
    """The run's judge identity and totals (results.json, else the manifest); {} when nothing was judged."""
    judge = run.results.get("judge") or run.manifest.get("judge")
    return judge if isinstance(judge, dict) else {}


JUDGE_ACCOUNTING = ("calls", "cached", "errors", "parse_retries", "media_dropped", "input_tokens", "output_tokens",
                    "cost_usd")


def judge_summary(judge: dict[str, Any]) -> str:
    """The accounting of a judge record in words: calls, cache hits, errors, re-asks, tokens, cost."""
    return ", ".join(f"{k.replace('_', ' ')} {judge[k]}" for k in JUDGE_ACCOUNTING if judge.get(k) not in (None, 0))


def columns(runs: list[Run]) -> list[Column]:
    """Suite groups first, then every (task, metric) and its parts seen in any run, in first-seen order."""
    seen: dict[str, Column] = {}
    for run in runs:
        for name, group in (run.results.get("groups") or {}).items():
            if isinstance(group, dict):
                seen.setdefault(f"group/{name}", Column(f"group/{name}", str(name), str(group.get("metric", "")),
                                                        group=SUITE))
    for run in runs:
        for task, entry in run.tasks.items():
            for metric in entry.get("metrics") or {}:
                key = f"{task}/{metric}"
                seen.setdefault(key, Column(key, task, metric))
                for group, part, _ in _parts(run, task, metric):
                    part_key = f"{key}/{group}/{part}"
                    seen.setdefault(part_key, Column(part_key, task, metric, part, group))
    return list(seen.values())


def _suite_cell(run: Run, column: Column) -> dict[str, Any]:
    group = (run.results.get("groups") or {}).get(column.task)
    if not isinstance(group, dict):
        return {"status": Status.ABSENT}
    parts = group.get("parts") or {}
    (protocol,) = protocols([run], column)
    status = group.get("status") or (Status.COMPLETE if group.get("value") is not None else Status.ERROR)
    out = {"status": Status.ERROR if status == Status.INCOMPLETE else status,
           "value": _number(group.get("value")), "stderr": _number(group.get("stderr_over_dimensions")),
           "n": len(parts), "parts": {str(k): _number(v) for k, v in parts.items()}}
    if protocol:
        out["protocol"] = protocol
    if group.get("reason"):
        out["reason"] = str(group["reason"])
    return out


def cell(run: Run, column: Column) -> dict[str, Any]:
    """One run's entry for one column: status, value, stderr, n, errors, reason and judge."""
    if column.group == SUITE:
        return _suite_cell(run, column)
    entry = run.tasks.get(column.task)
    if entry is None:
        return {"status": Status.ABSENT}
    out: dict[str, Any] = {"status": entry.get("status", Status.COMPLETE)}
    protocol = run.protocol(column.task)
    if protocol:
        out["protocol"] = protocol
    if entry.get("reason"):
        out["reason"] = str(entry["reason"])
    counts = entry.get("counts") or {}
    out["samples"], out["errored"] = counts.get("samples"), counts.get("errored")
    metric = (entry.get("metrics") or {}).get(column.metric)
    judge = (metric or {}).get("judge") or entry.get("judge")
    if judge:
        identity = run_judge(run)
        out["judge"] = judge_name(judge) or judge_name({**identity, **judge}) or "a judge"
        out["judge_accounting"] = judge_summary(judge) if isinstance(judge, dict) else ""
    agreement = (metric or {}).get("human_agreement")
    if isinstance(agreement, dict) and agreement.get("n"):
        out["human_agreement"] = ", ".join(f"{k} {v}" for k, v in agreement.items() if v is not None)
    not_applicable = (metric or {}).get("not_applicable")
    if isinstance(not_applicable, dict) and not_applicable.get("count"):
        out["partly_not_applicable"] = (f"{not_applicable['count']} samples not applicable: "
                                        + "; ".join(map(str, not_applicable.get("reasons") or [])))
    if metric is None:
        if out["status"] == Status.COMPLETE:
            out["status"] = Status.ABSENT
        return out
    source = metric
    if column.part is not None:
        source = next((e for g, p, e in _parts(run, column.task, column.metric)
                       if g == column.group and p == column.part), None)
        if source is None:
            return {**out, "status": Status.ABSENT}
    out.update(value=_number(source.get("value")), stderr=_number(source.get("stderr")), n=source.get("n"),
               errors=source.get("errors", metric.get("errors") if column.part is None else None),
               extraction_failures=source.get("extraction_failures"))
    synergy = _synergy(metric) if column.part is None else {}
    if synergy:  # beside the value: each pair's mean, e.g. {"ti": 0.6, "ta": 0.5}
        out["synergy"] = {k[len(SYNERGY_PREFIX):]: _number(v.get("value")) for k, v in synergy.items()}
    return out


def long_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per (run, column): the tidy form behind CSV and JSON."""
    rows = []
    for run in runs:
        for column in columns(runs):
            c = cell(run, column)
            if c["status"] == Status.ABSENT:
                continue
            rows.append({"model": run.label, "run_id": run.run_id, "task": column.task, "metric": column.metric,
                         "part": column.part or "", "status": c["status"], "value": c.get("value"),
                         "stderr": c.get("stderr"), "n": c.get("n"), "errors": c.get("errors"),
                         "samples": c.get("samples"), "judge": c.get("judge") or "", "reason": c.get("reason", ""),
                         "protocol": c.get("protocol") or ""})
    return rows


def format_cell(c: dict[str, Any], digits: int = 3) -> str:
    if c["status"] == Status.ABSENT:
        return ""
    if c["status"] == Status.NOT_APPLICABLE:
        return "n/a"
    if c.get("value") is None:
        return Status.ERROR.value if c["status"] == Status.ERROR else "–"
    text = f"{c['value']:.{digits}f}"
    if c.get("stderr") is not None:
        text += f" ± {c['stderr']:.{digits}f}"
    return text + (" (error)" if c["status"] == Status.ERROR else "")


def to_markdown(runs: list[Run]) -> str:
    cols = columns(runs)
    conflicts = protocol_conflicts(runs)

    def header(column: Column) -> str:  # the protocol beside the task: numbers under two are not comparable
        if column.part is None and column.task in conflicts:
            return f"{column.label} (protocols differ: {' / '.join(conflicts[column.task])})"
        found = sorted({p for p in protocols(runs, column) if p}) if column.part is None else []
        return column.label + (f" (protocol {found[0]})" if found else "")

    head = ["model", *(header(c) for c in cols), "samples", "errors"]

    def esc(text: str) -> str:  # model-controlled text stays literal: no HTML, no table breaks
        return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                .replace("|", "\\|").replace("\n", " "))

    lines = ["| " + " | ".join(esc(h) for h in head) + " |", "|" + "---|" * len(head)]
    notes: list[str] = []
    for task, found in conflicts.items():
        column = next(c for c in cols if c.task == task and c.part is None)
        by_run = "; ".join(f"{esc(r.label)}: {esc(p)}" for r, p in zip(runs, protocols(runs, column)) if p)
        notes.append(f"- {esc(task)}: scored under different protocols ({by_run}); these numbers are not comparable")
    for run in runs:
        cells = [format_cell(cell(run, c)) for c in cols]
        samples = sum((e.get("counts") or {}).get("samples", 0) for e in run.tasks.values())
        errors = sum((e.get("counts") or {}).get("errored", 0) for e in run.tasks.values())
        lines.append("| " + " | ".join(esc(x) for x in [run.label, *cells, str(samples), str(errors)]) + " |")
        for task, entry in run.tasks.items():
            if entry.get("status") in (Status.NOT_APPLICABLE, Status.ERROR) and entry.get("reason"):
                notes.append(f"- {esc(run.label)} / {esc(task)}: {entry['status']}: {esc(str(entry['reason']))}")
            if entry.get("judge"):
                c = cell(run, next(col for col in cols if col.task == task))
                notes.append(f"- {esc(run.label)} / {esc(task)}: judge {esc(c.get('judge', ''))}"
                             + (f" ({esc(c['judge_accounting'])})" if c.get("judge_accounting") else ""))
    return "\n".join(lines + ([""] + notes if notes else []) + _vs_base_lines(runs, cols, esc)) + "\n"


def _vs_base_lines(runs: list[Run], cols: list[Column], esc: Any) -> list[str]:
    """Each trained run's difference from its base run on the board, per task metric."""
    from eval_anything.leaderboard.lineage import base_runs, deltas

    pairs = base_runs(runs)
    whole = [c for c in cols if c.part is None]
    lines = []
    for trained, base in pairs.items():
        cells = {c.key: cell(runs[trained], c) for c in whole}
        base_cells = {c.key: cell(runs[base], c) for c in whole}
        found = deltas(runs[trained], runs[base], cells, base_cells, [c.key for c in whole])
        shown = "; ".join(f"{esc(c.label)} {found[c.key]:+.3f}" for c in whole if c.key in found)
        lines.append(f"- {esc(runs[trained].label)} vs its base {esc(runs[base].label)}: {shown or 'no task in common'}")
    return ["", "Trained runs against their base run:", *lines] if lines else []


def to_csv(runs: list[Run]) -> str:
    buffer = io.StringIO()
    rows = long_rows(runs)
    fields = ["model", "run_id", "task", "metric", "part", "status", "value", "stderr", "n", "errors",
              "samples", "judge", "reason", "protocol"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        # a leading =, +, - or @ would be a formula in a spreadsheet: model output is untrusted
        writer.writerow({k: ("'" + v if isinstance(v, str) and v and v[0] in "=+-@" else v) for k, v in row.items()})
    return buffer.getvalue()


def to_json(runs: list[Run]) -> str:
    return json.dumps({
        "runs": [{"model": r.label, "run_id": r.run_id, "path": str(r.path), "status": r.results.get("status"),
                  "lineage": r.lineage} for r in runs],
        "rows": long_rows(runs),
    }, indent=2, default=str) + "\n"


FORMATS = {"markdown": to_markdown, "csv": to_csv, "json": to_json}
"""Table format name -> renderer of the runs."""
