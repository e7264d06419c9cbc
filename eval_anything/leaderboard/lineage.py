"""Trained runs beside their base: which run on a board evaluated the model a trained run's
checkpoint started from, the difference per task, and the `align compare` tables the runs point to.

A run's lineage (manifest.json, written from the checkpoint's lineage file) names `base_model` as it
was given to align: a folder, `embedded:NAME` or `BACKEND:REF`. The base run is the board's run of a
model without lineage whose reference is that (compared as given and as a resolved folder); when
several are, the latest. Read from run directories only.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eval_anything.leaderboard.runs import Run


def _names(model: dict[str, Any]) -> set[str]:
    backend, reference = str(model.get("backend", "")), str(model.get("reference", ""))
    names = {reference, f"{backend}:{reference}"}
    path = Path(reference)
    if path.is_dir():
        names.add(str(path.resolve()))
    return names


def _base_names(base_model: str) -> set[str]:
    names = {base_model}
    path = Path(base_model.partition(":")[2] if ":" in base_model and not Path(base_model).exists() else base_model)
    if path.is_dir():
        names.add(str(path.resolve()))
    return names


def base_runs(runs: list[Run]) -> dict[int, int]:
    """Index of a trained run -> index of its base run, for the trained runs whose base is on the board."""
    bases = [(i, _names(r.model), str(r.manifest.get("created_at") or "")) for i, r in enumerate(runs) if not r.lineage]
    out = {}
    for index, run in enumerate(runs):
        base_model = (run.lineage or {}).get("base_model")
        if not isinstance(base_model, str):
            continue
        wanted = _base_names(base_model)
        found = [(created, i) for i, names, created in bases if names & wanted]
        if found:
            out[index] = max(found)[1]
    return out


def deltas(run: Run, base: Run, cells: dict[str, dict[str, Any]], base_cells: dict[str, dict[str, Any]],
           keys: list[str]) -> dict[str, float]:
    """Column key -> trained value minus base value, where both have one (whole metrics, not parts)."""
    out = {}
    for key in keys:
        mine, theirs = cells.get(key) or {}, base_cells.get(key) or {}
        if isinstance(mine.get("value"), (int, float)) and isinstance(theirs.get("value"), (int, float)):
            out[key] = mine["value"] - theirs["value"]
    return out


def compare_tables(runs: list[Run]) -> list[dict[str, Any]]:
    """The `align compare` summaries (compare.json) the runs' lineage points to, each once."""
    seen: dict[str, dict[str, Any]] = {}
    for run in runs:
        pipeline = (run.lineage or {}).get("pipeline") or {}
        path = pipeline.get("summary") if isinstance(pipeline, dict) else None
        if not isinstance(path, str) or path in seen or not Path(path).is_file():
            continue
        try:
            summary = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(summary.get("table"), dict):
            seen[path] = {"path": path, "arms": ["base", *summary["config"].get("arms", [])],
                          "seeds": len(summary.get("seeds") or []), "table": summary["table"]}
    return list(seen.values())


def step_charts(runs: list[Run], first_metrics: dict[str, str], cells: list[dict[str, dict[str, Any]]]
                ) -> list[dict[str, Any]]:
    """Task scores against training step, one chart per training (in-loop runs of one trainer output
    folder, whose lineage has a step); `first_metrics` maps each task to its first metric's column key."""
    trainings: dict[str, list[tuple[int, int]]] = {}
    for index, run in enumerate(runs):
        lineage = run.lineage or {}
        if isinstance(lineage.get("step"), int):
            key = str(lineage.get("trainer_output_dir") or (lineage.get("base_model"), lineage.get("method")))
            trainings.setdefault(key, []).append((lineage["step"], index))
    charts = []
    for points in trainings.values():
        points.sort()
        first = runs[points[0][1]].lineage or {}
        tasks = [t for t in first_metrics if any(first_metrics[t] in cells[i] for _, i in points)]
        charts.append({"kind": "steps", "title": f"{first.get('method')} from {first.get('base_model')}: "
                                                  "each task's first metric by training step",
                       "groups": [f"step {step}" for step, _ in points],
                       "series": [{"label": task, "values": [(cells[i].get(first_metrics[task]) or {}).get("value")
                                                             for _, i in points]} for task in tasks]})
    return charts
