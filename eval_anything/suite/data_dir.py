"""`--data-dir`: run the suite's task files on a local copy of the published datasets instead of
the embedded mini-suite. The published files are read once into rows in the mini-suite's format
(under DIR/.eval-anything/rows/data), and the suite's tasks read those."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from eval_anything.suite.published import ALL_LAYOUT, materialize
from eval_anything.tasks import Task
from eval_anything.tasks.catalog import BUILTIN_DIR

SUITE_DIR = BUILTIN_DIR / "suite"


def _part_of(task: Task) -> str:
    if task.name.startswith("amu_"):
        return "amu"
    if task.name.startswith("amg_if_"):
        return "instruction_following"
    return "selection"


def with_published_data(tasks: Sequence[Task], data_dir: Path) -> list[Task]:
    """The same tasks, the suite's ones reading the published data under `data_dir`, which holds
    the dataset folders as downloaded: EvalAnything-AMU, EvalAnything-Selection_Synergy,
    EvalAnything-InstructionFollowing (only those the chosen tasks need)."""
    rows_dir = data_dir / ".eval-anything" / "rows"
    suite_tasks = [t for t in tasks if Path(t.source).parent == SUITE_DIR]
    for part in sorted({_part_of(t) for t in suite_tasks}):
        materialize(part, data_dir / ALL_LAYOUT[part], rows_dir / "data")
    return [Task(t.config, rows_dir, t.source) if t in suite_tasks else t for t in tasks]
