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


AGGREGATES: dict[str, tuple[Callable[[Sequence[float]], float], Callable[[Sequence[float]], float]]] = {
    "mean": (mean, mean_stderr),
    "median": (median, lambda values: bootstrap_stderr(values, median)),
}
"""Aggregate name -> (statistic, its standard error)."""
