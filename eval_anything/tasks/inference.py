"""Zero-code tasks: a data file (JSONL, JSON, CSV or parquet) given as a task, its columns inferred by
name. `eval-anything run --tasks ./my_items.jsonl` uses this and prints what it inferred."""
from __future__ import annotations

import hashlib
import itertools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval_anything.tasks.config import TaskFileError, parse_task_config
from eval_anything.tasks.dataset import SUPPORTED, iter_rows
from eval_anything.tasks.task import Task, as_list

ID_COLUMNS = ("id", "item_id", "uid", "qid", "question_id", "sample_id", "idx")
QUESTION_COLUMNS = ("question", "prompt", "text", "query", "instruction", "input")
ANSWER_COLUMNS = ("answer", "target", "label", "gold", "reference", "solution", "output")
CHOICE_COLUMNS = ("choices", "options", "candidates")
MEDIA_COLUMNS = {  # column name -> the input kind it holds ("media": told by each file's extension)
    **{n: "image" for n in ("image", "image_path", "image_file", "img", "picture", "photo")},
    **{n: "audio" for n in ("audio", "audio_path", "audio_file", "sound", "speech")},
    **{n: "video" for n in ("video", "video_path", "video_file", "clip")},
    **{n: "media" for n in ("media", "media_path", "file", "file_path", "path")},
}
SCAN_ROWS = 200
"""Rows read to decide whether answers are numeric."""
_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")

MC_PROMPT = ("{{ %s }}\n{%% for choice in choices -%%}\n{{ letters[loop.index0] }}. {{ choice }}\n"
             "{%% endfor -%%}\nAnswer with the letter only.")


@dataclass
class Inference:
    """What was inferred from a data file's columns, as a task file's fields, and how."""

    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def summary(self, path: Path) -> str:
        return f"inferred task {self.data['name']!r} from {path}:\n" + "\n".join(f"  {n}" for n in self.notes)


def is_data_file(name: str) -> bool:
    return Path(name).suffix.lower() in SUPPORTED


def _pick(columns: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    return next((lowered[n] for n in names if n in lowered), None)


def _task_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", path.stem) or "task"


def infer_config(path: Path) -> Inference:
    """A task file's fields for the data file at `path`; TaskFileError when a needed column is missing."""
    path = Path(path)
    rows = list(itertools.islice(iter_rows(path), SCAN_ROWS))
    if not rows:
        raise TaskFileError(f"{path}: no rows to infer a task from")
    columns: list[str] = list(dict.fromkeys(k for row in rows for k in row))
    notes = [f"columns: {', '.join(columns)}"]
    question = _pick(columns, QUESTION_COLUMNS)
    answer = _pick(columns, ANSWER_COLUMNS)
    choices = _pick(columns, CHOICE_COLUMNS)
    id_column = _pick(columns, ID_COLUMNS)
    media = [(c, MEDIA_COLUMNS[c.lower()]) for c in columns if c.lower() in MEDIA_COLUMNS]
    if question is None:
        raise TaskFileError(f"{path}: cannot tell which column is the question: name it one of "
                            f"{', '.join(QUESTION_COLUMNS)}, or write a task YAML (see README, 'A task')")
    if answer is None:
        raise TaskFileError(f"{path}: cannot tell which column is the answer: name it one of "
                            f"{', '.join(ANSWER_COLUMNS)}, or write a task YAML (see README, 'A task')")
    notes.append(f"id: {id_column!r}" if id_column else "id: row number (no column named id)")
    notes.append(f"question: {question!r}")
    for column, kind in media:
        notes.append(f"{kind}: {column!r}" + (" (modality from each file's extension)" if kind == "media" else ""))
    notes.append(f"answer: {answer!r}")
    data: dict[str, Any] = {
        "name": _task_name(path),
        "version": "inferred-" + hashlib.sha256(",".join(columns).encode()).hexdigest()[:8],
        "description": f"inferred from the columns of {path.name}",
        "dataset": {"path": path.name},
        "input": [{kind: column} for column, kind in media] + [{"text": question}],
        "target": answer,
        "generation": {"max_new_tokens": 32, "stop": ["\n"]},
    }
    if id_column:
        data["id_field"] = id_column
    if choices:
        notes.append(f"choices: {choices!r}")
        data["choices"] = choices
        data["prompt"] = MC_PROMPT % question
        data["input"] = [{kind: column} for column, kind in media] or [{"text": question}]
        data["generation"]["max_new_tokens"] = 8
        scorer, why = "multiple_choice", f"the choices column {choices!r}"
    elif all(_NUMBER.match(str(t)) for row in rows for t in as_list(row.get(answer))):
        scorer, why = "numeric", f"every answer in {answer!r} is a number"
    else:
        scorer, why = "exact_match", f"the answers in {answer!r} are text"
    data["scorers"] = [scorer]
    notes.append(f"scorer: {scorer} ({why})")
    notes.append("write a task YAML to change any of this (README, 'A task'); "
                 "`eval-anything validate-task` checks the file")
    return Inference(data, notes)


def load_data_task(path: Path | str, announce: bool = True) -> Task:
    """The task inferred from a data file; prints what was inferred (to stderr) when `announce`."""
    path = Path(path)
    inference = infer_config(path)
    if announce:
        print(inference.summary(path), file=sys.stderr)
    return Task(parse_task_config(inference.data, str(path)), path.parent, str(path))
