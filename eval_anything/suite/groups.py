"""Suite-level scores made of task scores: AMU is the mean of its four dimensions."""
from __future__ import annotations

from typing import Any, Mapping

from eval_anything.stats import mean, mean_stderr

COMPOSITES: dict[str, tuple[tuple[str, ...], str]] = {
    "amu": (("amu_perception", "amu_reasoning", "amu_instruction_following", "amu_safety"), "judge_rating"),
}
"""Group name -> (member tasks, the metric averaged over them, unweighted)."""


def group_scores(outcomes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for name, (members, metric) in COMPOSITES.items():
        present = [m for m in members if m in outcomes]
        if not present:
            continue
        values = {m: (outcomes[m].get("metrics") or {}).get(metric, {}).get("value") for m in present}
        missing = [m for m in members if values.get(m) is None]
        if missing:
            inapplicable = all(outcomes.get(m, {}).get("status") == "not_applicable" for m in missing if m in outcomes)
            groups[name] = {"metric": metric, "value": None, "parts": values,
                            "status": "not_applicable" if inapplicable else "incomplete",
                            "reason": f"no {metric} for {', '.join(missing)}"}
            continue
        parts = [values[m] for m in members]
        groups[name] = {"metric": metric, "value": mean(parts), "stderr_over_dimensions": mean_stderr(parts),
                        "parts": values, "status": "complete"}
    return groups
