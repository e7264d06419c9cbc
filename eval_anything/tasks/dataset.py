"""Reading a task's rows from local files (JSONL, JSON, CSV, parquet), streaming where possible."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator

SUPPORTED = (".jsonl", ".json", ".csv", ".parquet")


class DataFileError(ValueError):
    """A data file is missing or unreadable; the message names the file and row."""


def iter_rows(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        raise DataFileError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _jsonl_rows(path)
    elif suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list):
            raise DataFileError(f"{path}: expected a JSON list of objects")
        yield from rows
    elif suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            yield from csv.DictReader(handle)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches():
            yield from batch.to_pylist()
    else:
        raise DataFileError(f"{path}: unsupported data format {suffix!r} (use one of {', '.join(SUPPORTED)})")


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFileError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataFileError(f"{path}:{line_no}: expected a JSON object per line")
            yield row


def count_rows(path: Path) -> int:
    if path.suffix.lower() == ".jsonl":
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return sum(1 for _ in iter_rows(path))
