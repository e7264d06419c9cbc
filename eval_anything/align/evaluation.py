"""Evaluating what align trained with the harness's runner: each evaluation is a normal run
directory, whose manifest carries the checkpoint's lineage."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def evaluate_checkpoint(model: str, tasks: Sequence[str], output_dir: str, limit: int | None,
                        max_new_tokens: int | None, command: Sequence[str] = (), judge: str | None = None,
                        judge_args: dict[str, Any] | None = None) -> Any:
    """`eval-anything run` on a checkpoint: its run directory's manifest carries the lineage.
    `judge`: the model judging judged tasks (BACKEND:REF, with `judge_args`); None: the embedded one."""
    from eval_anything.models import resolve_spec
    from eval_anything.runner import evaluate
    from eval_anything.settings import RunSettings
    from eval_anything.tasks import Catalog

    spec = resolve_spec(model)
    settings = RunSettings(output_dir=Path(output_dir), limit=limit, max_new_tokens=max_new_tokens,
                           command=tuple(command) or ("eval-anything", "run", "--model", model),
                           judge=judge_settings(judge, judge_args))
    return evaluate(spec, Catalog().resolve(",".join(tasks)), settings)


def judge_settings(judge: str | None, judge_args: dict[str, Any] | None = None) -> Any:
    """As `--judge BACKEND:REF --judge-args ...` sets it; None for the embedded default."""
    if not judge:
        return None
    from eval_anything.models import resolve_spec
    from eval_anything.models.embedded import cache_root
    from eval_anything.settings import JUDGE_DEFAULTS, JudgeSettings

    max_new_tokens, retries = JUDGE_DEFAULTS
    return JudgeSettings(resolve_spec(judge, judge_args or {}), max_new_tokens=max_new_tokens, parse_retries=retries,
                         cache_path=cache_root() / "judge-cache.sqlite")
