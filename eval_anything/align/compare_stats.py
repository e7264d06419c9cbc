"""The statistics of `align compare`, from run directories alone: per task, each arm's mean with a
95% interval, and a paired test between the LLF and the binary arm of each optimiser.

Two sources of variation are in an arm's score: which items the task has and which seed trained
the checkpoint (the draw of labelled rows, the training and sampling randomness). The interval is
a two-level bootstrap: seeds resampled with replacement, then items within each seed, the task
score being the mean of the seeds' means. The paired test does the same on the per-item
differences of the two arms of one seed (same items, same rows, same optimiser settings), and its
p-value is the bootstrap's two-sided one (gate.bootstrap_p). Scores are each task's first metric,
per item, as in its sample log; an item an arm errored on is left out of that arm (and its pairs).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from eval_anything.datamodel import Status
from eval_anything.gate import bootstrap_p
from eval_anything.leaderboard.runs import load_run

RESAMPLES = 2000
LEVEL = 0.95
PAIRS = (("llf-dpo", "binary-dpo"), ("llf-ppo", "binary-ppo"))
"""(LLF arm, binary arm) compared by the paired test."""


def item_scores(run: Any, task: str, metric: str) -> tuple[dict[str, float], int]:
    """Scored items' values of `metric`, by id, and how many items errored."""
    values, errored = {}, 0
    for record in run.iter_samples(task):
        score = (record.get("scores") or {}).get(metric) or {}
        if score.get("error") is None and isinstance(score.get("value"), (int, float)):
            values[str(record["id"])] = float(score["value"])
        elif score.get("error") is not None:
            errored += 1
    return values, errored


def _not_applicable(runs: Sequence[Any], task: str) -> str | None:
    """The first run's reason a task had no score (they differ only by the model's name)."""
    return next((str(run.tasks[task].get("reason")) for run in runs
                 if (run.tasks.get(task) or {}).get("status") == Status.NOT_APPLICABLE), None)


def two_level_draws(groups: Sequence[Sequence[float]], resamples: int, seed: int) -> Any:
    """Bootstrap draws of the mean over groups (seeds) of each group's mean over its items."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = [np.asarray(g, dtype=float) for g in groups if len(g)]
    within = np.stack([a[rng.integers(0, len(a), size=(resamples, len(a)))].mean(axis=1) for a in arrays])
    picks = rng.integers(0, len(arrays), size=(resamples, len(arrays)))
    return within[picks, np.arange(resamples)[:, None]].mean(axis=1)


def _interval(draws: Any) -> tuple[float, float]:
    import numpy as np

    low, high = np.quantile(draws, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2])
    return float(low), float(high)


def _first_metric(runs: Sequence[Any], task: str) -> str | None:
    for run in runs:
        metrics = (run.tasks.get(task) or {}).get("metrics") or {}
        if metrics:
            return next(iter(metrics))
    return None


def summarise(run_dirs: Mapping[str, Sequence[str]], arms: Sequence[str], seed: int = 0,
              resamples: int = RESAMPLES) -> dict[str, Any]:
    """{tasks: {task: {metric, arms: {arm: mean, low, high, seeds, n}, paired: [...]}}} from each
    arm's run directories, one per seed, in seed order (the base: one run)."""
    runs = {arm: [load_run(d) for d in dirs] for arm, dirs in run_dirs.items()}
    every = [run for group in runs.values() for run in group]
    tasks = list(dict.fromkeys(task for run in every for task in run.tasks))
    table: dict[str, Any] = {"level": LEVEL, "resamples": resamples, "tasks": {}}
    for number, task in enumerate(tasks):
        metric = _first_metric(every, task)
        if metric is None:
            table.setdefault("not_applicable", {})[task] = _not_applicable(every, task) or "no metric in any run"
            continue
        read = {arm: [item_scores(run, task, metric) for run in group] for arm, group in runs.items()}
        scores = {arm: [values for values, _ in per_seed] for arm, per_seed in read.items()}
        entry: dict[str, Any] = {"metric": metric, "arms": {}, "paired": []}
        for arm, per_seed in scores.items():
            entry["arms"][arm] = {**_arm_summary(per_seed, resamples, seed + number),
                                  "errored": sum(errored for _, errored in read[arm])}
        for llf, binary in PAIRS:
            if llf in scores and binary in scores and llf in arms and binary in arms:
                entry["paired"].append(_paired(llf, binary, scores[llf], scores[binary], resamples, seed + number))
        table["tasks"][task] = entry
    return table


def _arm_summary(per_seed: Sequence[Mapping[str, float]], resamples: int, seed: int) -> dict[str, Any]:
    seed_means = [sum(s.values()) / len(s) if s else None for s in per_seed]
    scored = [list(s.values()) for s in per_seed if s]
    if not scored:
        return {"mean": None, "low": None, "high": None, "seeds": seed_means, "n": 0}
    low, high = _interval(two_level_draws(scored, resamples, seed))
    means = [m for m in seed_means if m is not None]
    return {"mean": sum(means) / len(means), "low": low, "high": high, "seeds": seed_means,
            "n": sum(len(s) for s in scored)}


def _paired(llf: str, binary: str, a: Sequence[Mapping[str, float]], b: Sequence[Mapping[str, float]],
            resamples: int, seed: int) -> dict[str, Any]:
    differences = [[x[i] - y[i] for i in sorted(x.keys() & y.keys())] for x, y in zip(a, b)]
    differences = [d for d in differences if d]
    out: dict[str, Any] = {"llf": llf, "binary": binary, "n": sum(len(d) for d in differences), "seeds": len(differences)}
    if not differences:
        return {**out, "diff": None, "low": None, "high": None, "p": None}
    draws = two_level_draws(differences, resamples, seed)
    low, high = _interval(draws)
    diff = sum(sum(d) / len(d) for d in differences) / len(differences)
    return {**out, "diff": diff, "low": low, "high": high, "p": bootstrap_p(draws),
            "test": f"paired two-level bootstrap over seeds and items ({resamples} resamples)"}


def _number(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def to_markdown(table: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    """The comparison as a markdown table: arms as columns, tasks as rows, then the paired tests."""
    arms = ["base", *summary["config"]["arms"]]
    config = summary["config"]
    seeds = len(summary.get("seeds") or [])
    first = (summary.get("seeds") or [{}])[0]
    budget, binary = first.get("budget", config.get("budget")), first.get("binary_budget", config.get("budget"))
    rows = f"{budget} labelled rows per arm" if budget == binary else f"{budget} labelled rows for LLF, {binary} for binary"
    lines = [f"# align compare: {rows}, {seeds} seed{'s' if seeds != 1 else ''}", "",
             f"Mean of each task's first metric [{int(100 * table['level'])}% interval: two-level bootstrap over "
             "seeds and items]; n = items scored over all seeds.", "",
             "| task | metric | " + " | ".join(arms) + " |", "|---|---|" + "---|" * len(arms)]
    for task, entry in table["tasks"].items():
        cells = []
        for arm in arms:
            a = entry["arms"].get(arm)
            errored = f" ({a['errored']} errored)" if a and a.get("errored") else ""
            cells.append(("—" if a is None or a["mean"] is None else
                          f"{_number(a['mean'])} [{_number(a['low'])}, {_number(a['high'])}] n={a['n']}") + errored)
        lines.append(f"| {task} | {entry['metric']} | " + " | ".join(cells) + " |")
    for task, reason in (table.get("not_applicable") or {}).items():
        lines.append(f"| {task} | — | not applicable: {reason} |" + " |" * (len(arms) - 1))
    paired = [(task, p) for task, entry in table["tasks"].items() for p in entry["paired"]]
    if paired:
        lines += ["", "| task | LLF − binary | difference [95% interval] | p | n pairs |", "|---|---|---|---|---|"]
        for task, p in paired:
            lines.append(f"| {task} | {p['llf']} − {p['binary']} | {_number(p['diff'])} [{_number(p['low'])}, "
                         f"{_number(p['high'])}] | {_number(p['p'])} | {p['n']} |")
    return "\n".join(lines) + "\n"
