"""Repeated generations (`--repeats K`): each sample is generated K times, repeat r with seed
`seed + r`, every repeat is scored on its own, and the sample's score is the mean over its repeats.

A sample's record keeps every repeat's requests and outputs and, per scorer, the repeats' values
in `details.repeats` (None for a repeat that errored), so results can split the variance of the
task score into the part between items and the part between repeats of one item."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from eval_anything.datamodel import Score
from eval_anything.stats import mean, sample_std


def combine(per_repeat: Sequence[dict[str, Score]]) -> dict[str, Score]:
    """One score per scorer from the scores of each repeat of a sample."""
    names = dict.fromkeys(name for scores in per_repeat for name in scores)
    return {name: _combined([scores[name] for scores in per_repeat if name in scores]) for name in names}


def _combined(scores: Sequence[Score]) -> Score:
    if len(scores) == 1:
        return scores[0]
    valid = [s for s in scores if s.value is not None]
    details: dict[str, Any] = {"repeats": [s.value for s in scores]}
    verdicts = [v for s in scores for v in s.details.get("judge", ())]
    if verdicts:  # judge accounting counts every repeat's calls
        details["judge"] = verdicts
    errors = [s.error for s in scores if s.error is not None]
    if errors:
        details["repeat_errors"] = errors
    if not valid:
        inapplicable = [s.not_applicable for s in scores if s.not_applicable]
        if inapplicable and not errors:
            return Score.inapplicable(inapplicable[0], **details)
        if any("judge_error" in s.details for s in scores):
            details["judge_error"] = True
        return Score(value=None, error=f"every one of {len(scores)} repeats failed: {errors[0]}", details=details)
    return Score(value=mean([s.value for s in valid]), answer=valid[0].answer,
                 explanation=f"mean of {len(valid)} of {len(scores)} repeats",
                 extraction_failed=all(s.extraction_failed for s in valid), details=details)


@dataclass(frozen=True)
class RepeatSpread:
    """How a task score built from item means over K repeats varies."""

    k: int
    item_sd: float
    """Standard deviation of the item means (between items)."""
    repeat_sd: float
    """Root mean within-item variance of the repeats (between repeats of one item)."""
    ci95: tuple[float, float]
    """95% normal interval of the mean over items; its standard error, from the item means, carries
    both sources of variation (items are the independent units, repeats are nested in them)."""

    def to_json(self) -> dict[str, Any]:
        return {"k": self.k, "item_sd": _finite(self.item_sd), "repeat_sd": _finite(self.repeat_sd),
                "ci95": [_finite(self.ci95[0]), _finite(self.ci95[1])]}


def spread(item_means: Sequence[float], repeats: Sequence[Sequence[float | None]], stderr: float) -> RepeatSpread:
    variances = [sample_std([v for v in values if v is not None]) ** 2 for values in repeats]
    within = [v for v in variances if not math.isnan(v)]
    centre = mean(item_means)
    return RepeatSpread(k=max((len(r) for r in repeats), default=1), item_sd=sample_std(item_means),
                        repeat_sd=math.sqrt(mean(within)) if within else math.nan,
                        ci95=(centre - 1.96 * stderr, centre + 1.96 * stderr))


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)
