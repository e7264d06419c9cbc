"""`replay:FILE.jsonl` — score predictions made elsewhere with the same scorers.

One JSON object per line: `id` (the sample id), optionally `task` (needed when ids repeat
across tasks), `text` (the answer), optionally `variant` (for multi-variant tasks such as
circular multiple choice; default 0), `media` (a list of {"modality": "image", "path": ...},
paths relative to the file) and `error` (a generation failure to record as such).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from eval_anything.datamodel import Modality, ModelOutput, Part, Request
from eval_anything.errors import UsageError
from eval_anything.models.base import Model, ModelSpec

_Key = tuple[str | None, str, int]


class ReplayModel(Model):
    input_modalities = frozenset(Modality)
    output_modalities = frozenset(Modality)

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.path = Path(spec.reference)
        if spec.args:
            raise UsageError(f"the replay backend takes no arguments, got {sorted(spec.args)}")
        self.predictions = _read_predictions(self.path)

    @property
    def batch_size(self) -> int:
        return 64

    def generate(self, requests: Sequence[Request]) -> list[ModelOutput]:
        return [self._lookup(r) for r in requests]

    def _lookup(self, request: Request) -> ModelOutput:
        for key in ((request.task, request.sample_id, request.variant), (None, request.sample_id, request.variant)):
            if key in self.predictions:
                return self.predictions[key]
        where = f"task {request.task!r}, sample {request.sample_id!r}"
        variant = f", variant {request.variant}" if request.variant else ""
        return ModelOutput.failed(f"no prediction for {where}{variant} in {self.path}")


def _read_predictions(path: Path) -> dict[_Key, ModelOutput]:
    if not path.is_file():
        raise FileNotFoundError(f"predictions file {path} does not exist")
    predictions: dict[_Key, ModelOutput] = {}
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or "id" not in row:
                raise UsageError(f"{where}: each line needs an object with an 'id'")
            key = (row.get("task"), str(row["id"]), int(row.get("variant", 0)))
            if key in predictions:
                raise UsageError(f"{where}: duplicate prediction for id {row['id']!r}")
            predictions[key] = _output_from_row(row, path.parent, where)
    return predictions


def _output_from_row(row: dict[str, Any], base: Path, where: str) -> ModelOutput:
    if row.get("error"):
        return ModelOutput.failed(str(row["error"]), replayed=True)
    text = str(row.get("text", ""))
    parts = [Part.of_text(text)] if text else []
    for item in row.get("media", []):
        try:
            path = Path(item["path"])
            parts.append(Part.of_file(Modality(item["modality"]), path if path.is_absolute() else base / path))
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"{where}: media items need 'modality' (text/image/audio/video) and 'path'") from None
    return ModelOutput(text=text, raw_text=text, parts=tuple(parts), metadata={"replayed": True})
