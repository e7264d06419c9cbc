"""Scores made of several tasks' scores (a suite's composite: AMU is the mean of its four
dimensions). Whoever defines the member tasks registers the composite here; every run whose results
hold a member reports it under "groups"."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from eval_anything.datamodel import Status
from eval_anything.registry import Registry
from eval_anything.stats import mean, mean_stderr


@dataclass(frozen=True)
class Composite:
    members: tuple[str, ...]
    """The member tasks; the composite has a value only when every one of them has the metric."""
    metric: str
    """The metric averaged over the members, unweighted."""


composites: Registry[Composite] = Registry("composite score")
"""Group name -> Composite; eval_anything.suite registers the suite's when its tasks load."""


def group_scores(outcomes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each registered composite that any of `outcomes` (task name -> its results) is a member of."""
    groups: dict[str, dict[str, Any]] = {}
    for name in composites:
        composite = composites.get(name)
        members, metric = composite.members, composite.metric
        present = [m for m in members if m in outcomes]
        if not present:
            continue
        values = {m: (outcomes[m].get("metrics") or {}).get(metric, {}).get("value") for m in present}
        missing = [m for m in members if values.get(m) is None]
        if missing:
            inapplicable = all(outcomes.get(m, {}).get("status") == Status.NOT_APPLICABLE for m in missing if m in outcomes)
            groups[name] = {"metric": metric, "value": None, "parts": values,
                            "status": Status.NOT_APPLICABLE if inapplicable else Status.INCOMPLETE,
                            "reason": f"no {metric} for {', '.join(missing)}"}
            continue
        parts = [values[m] for m in members]
        groups[name] = {"metric": metric, "value": mean(parts), "stderr_over_dimensions": mean_stderr(parts),
                        "parts": values, "status": Status.COMPLETE}
    return groups
