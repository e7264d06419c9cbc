"""Aggregates and their standard errors."""
from __future__ import annotations

import math
import random
from typing import Callable, Sequence


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def sample_std(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return math.nan
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))


def mean_stderr(values: Sequence[float]) -> float:
    """Analytic standard error of the mean (sample standard deviation / sqrt(n))."""
    return sample_std(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan


def bootstrap_stderr(values: Sequence[float], statistic: Callable[[Sequence[float]], float] = mean,
                     resamples: int = 1000, seed: int = 0) -> float:
    """Standard error of any statistic by resampling items with replacement (seeded)."""
    n = len(values)
    if n < 2:
        return math.nan
    rng = random.Random(seed)
    stats = [statistic([values[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples)]
    return sample_std(stats)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return math.nan
    middle = n // 2
    return ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def weighted_mean(values: Sequence[float], weights: Sequence[float]) -> float:
    """sum(w * v) / sum(w): e.g. per-prompt means weighted by their question counts give the mean
    over question rows."""
    total = sum(weights)
    return sum(w * v for v, w in zip(values, weights)) / total if total else math.nan


def weighted_mean_stderr(values: Sequence[float], weights: Sequence[float]) -> float:
    """Standard error of a weighted mean of item means, items as clusters (the ratio estimator's
    linearisation): questions of one prompt are not independent of each other."""
    n, total = len(values), sum(weights)
    if n < 2 or not total:
        return math.nan
    m = weighted_mean(values, weights)
    return math.sqrt(n / (n - 1) * sum((w * (v - m)) ** 2 for v, w in zip(values, weights))) / total


AGGREGATES: dict[str, tuple[Callable[[Sequence[float]], float], Callable[[Sequence[float]], float]]] = {
    "mean": (mean, mean_stderr),
    "median": (median, lambda values: bootstrap_stderr(values, median)),
}
"""Aggregate name -> (statistic, its standard error)."""


def _ranks(values: Sequence[float]) -> list[float]:
    """Average ranks (ties share the mean of their positions), 1-based."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) < 2:
        return math.nan
    ma, mb = mean(a), mean(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    norm = math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))
    return cov / norm if norm else math.nan


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Rank correlation; NaN when either side is constant."""
    return pearson(_ranks(a), _ranks(b))


def cohen_kappa(a: Sequence[object], b: Sequence[object]) -> float:
    """Agreement between two raters beyond chance; NaN when chance agreement is total."""
    n = len(a)
    if not n:
        return math.nan
    observed = sum(x == y for x, y in zip(a, b)) / n
    labels = set(a) | set(b)
    expected = sum((sum(x == label for x in a) / n) * (sum(y == label for y in b) / n) for label in labels)
    return (observed - expected) / (1 - expected) if expected < 1 else math.nan


def agreement(judged: Sequence[float], human: Sequence[float]) -> dict[str, float | int | None]:
    """How a judge's scores agree with human labels on the same items."""
    def finite(value: float) -> float | None:
        return None if math.isnan(value) else round(value, 6)

    out: dict[str, float | int | None] = {"n": len(judged)}
    if not judged:
        return out
    out["accuracy"] = round(sum(x == y for x, y in zip(judged, human)) / len(judged), 6)
    if len(set(judged) | set(human)) <= 10:  # categorical enough for kappa
        out["cohen_kappa"] = finite(cohen_kappa(judged, human))
    out["spearman"] = finite(spearman(judged, human))
    return out
