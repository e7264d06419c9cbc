"""A task's results from its per-sample records: metrics with standard errors, counts, usage,
judge accounting and the judge's agreement with human labels."""
from __future__ import annotations

import math
from typing import Any, Iterable

from eval_anything.repeats import spread
from eval_anything.stats import AGGREGATES, agreement, weighted_mean, weighted_mean_stderr
from eval_anything.tasks import Task

JUDGE_COUNTS = ("calls", "cached", "input_tokens", "output_tokens", "errors", "parse_retries", "media_dropped")


def aggregate(task: Task, records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Each scorer's metric (its declared aggregate ± standard error) and counts, from per-sample records.

    Records are read once, as a stream: only each score (without its answer and explanation texts)
    is kept, so a task's summary does not hold its prompts and outputs in memory."""
    scores: dict[str, list[dict[str, Any]]] = {scorer.name: [] for scorer in task.scorers}
    judged: list[dict[str, Any]] = []
    grouped: list[dict[str, Any]] | None = [] if task.config.breakdown else None
    shared: dict[tuple[Any, Any], dict[str, Any]] = {}
    samples = errored = requests = input_tokens = output_tokens = 0
    generation_s: float = 0
    for record in records:
        samples += 1
        slim = {name: _slim_score(score, shared) for name, score in record["scores"].items()}
        errored += any(score["error"] is not None for score in slim.values())
        for name, kept in scores.items():
            if name in slim:
                kept.append(slim[name])
        for output in record["outputs"]:
            requests += 1
            input_tokens += output["usage"]["input_tokens"]
            output_tokens += output["usage"]["output_tokens"]
            generation_s += output["latency_s"]
        if grouped is not None:
            grouped.append({"breakdown": record.get("breakdown", "?"), "scores": slim})
        judged.extend(slim[s.name] for s in task.judge_scorers if s.name in slim)
    metrics = {}
    for scorer, config in zip(task.scorers, task.config.scorers):
        metrics[scorer.name] = {**_metric(scores[scorer.name], config.aggregate), **scorer.summarize(scores[scorer.name])}
        if getattr(scorer, "human_label", None):
            metrics[scorer.name]["human_agreement"] = _agreement(scores[scorer.name])
    result = {
        "metrics": metrics,
        "counts": {"samples": samples, "scored": samples - errored, "errored": errored},
        "usage": {"requests": requests, "input_tokens": input_tokens, "output_tokens": output_tokens,
                  "generation_s": round(generation_s, 3)},
    }
    if grouped is not None:
        result["breakdown"] = _breakdown(task, grouped)
    if task.judge_scorers:
        result["judge"] = judge_accounting(judged)
    return result


def _slim_score(score: dict[str, Any], shared: dict[tuple[Any, Any], dict[str, Any]]) -> dict[str, Any]:
    """What results read of a score: its value and error, and flags and details where set (not the
    answer texts). The common plain scores are one shared object per (value, error)."""
    slim = {k: v for k, v in score.items() if k in ("value", "error") or (v and k not in ("answer", "explanation"))}
    if slim.keys() == {"value", "error"}:
        return shared.setdefault((slim["value"], slim["error"]), slim)
    return slim


def _statistic(scores: list[dict[str, Any]], aggregate_name: str) -> tuple[float, float]:
    values = [s["value"] for s in scores if s["value"] is not None]
    if aggregate_name == "weighted_mean":
        weights = [float(s.get("details", {}).get("weight", 1)) for s in scores if s["value"] is not None]
        return weighted_mean(values, weights), weighted_mean_stderr(values, weights)
    statistic, stderr = AGGREGATES[aggregate_name]
    return statistic(values), stderr(values)


def _metric(scores: list[dict[str, Any]], aggregate_name: str) -> dict[str, Any]:
    values = [s["value"] for s in scores if s["value"] is not None]
    value, stderr_value = _statistic(scores, aggregate_name)
    stderr = AGGREGATES.get(aggregate_name, AGGREGATES["mean"])[1]
    metric = {
        "aggregate": aggregate_name,
        "value": _finite(value), "stderr": _finite(stderr_value), "n": len(values),
        "errors": sum(1 for s in scores if s["error"] is not None),
        "extraction_failures": sum(1 for s in scores if s.get("extraction_failed")),
    }
    repeats = [s["details"]["repeats"] for s in scores if s["value"] is not None and "repeats" in s.get("details", {})]
    if repeats:
        metric["repeats"] = spread(values, repeats, stderr(values)).to_json()
    reasons = [s["not_applicable"] for s in scores if s.get("not_applicable")]
    if reasons:
        metric["not_applicable"] = {"count": len(reasons), "reasons": sorted(set(reasons))[:5]}
    return metric


def _breakdown(task: Task, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each scorer's mean per breakdown group (e.g. image+speech, or the chosen outputs ti)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record.get("breakdown", "?"), []).append(record)
    table = {}
    for key in sorted(groups):
        table[key] = {}
        for scorer in task.scorers:
            values = [r["scores"][scorer.name]["value"] for r in groups[key]
                      if scorer.name in r["scores"] and r["scores"][scorer.name]["value"] is not None]
            table[key][scorer.name] = {"value": _finite(AGGREGATES["mean"][0](values)), "n": len(values)}
    return table


def _agreement(scores: list[dict[str, Any]]) -> dict[str, Any]:
    pairs = [(s["value"], float(s["details"]["human"])) for s in scores
             if s["value"] is not None and "human" in s.get("details", {})]
    return agreement([p[0] for p in pairs], [p[1] for p in pairs])


def judge_accounting(scores: list[dict[str, Any]]) -> dict[str, int]:
    """Judge calls, cache hits, tokens, errors, re-asks and text-only judgements over judged scores."""
    totals = dict.fromkeys(JUDGE_COUNTS, 0)
    for score in scores:
        details = score.get("details", {})
        totals["errors"] += "judge_error" in details
        for verdict in details.get("judge", []):
            for key in ("calls", "cached", "input_tokens", "output_tokens"):
                totals[key] += verdict[key]
            totals["parse_retries"] += max(0, verdict["attempts"] - 1)
            totals["media_dropped"] += bool(verdict.get("media_dropped"))
    return totals


def judge_cost(totals: dict[str, int], price_per_million: tuple[float, float] | None) -> dict[str, float]:
    if price_per_million is None:
        return {}
    price_in, price_out = price_per_million
    return {"cost_usd": round((totals["input_tokens"] * price_in + totals["output_tokens"] * price_out) / 1e6, 6)}


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value
