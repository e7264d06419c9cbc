"""Reading files the way every part of the project needs: whole-file hashes, and JSONL logs whose
last line a crash may have torn."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_log(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a JSONL log in file order, stopping at a line torn by a crash."""
    with Path(path).open("rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                return
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                return
