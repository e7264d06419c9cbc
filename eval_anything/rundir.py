"""The run directory: a versioned manifest, per-task sample logs made durable as they finish,
and results written atomically. A run is complete only when results.json says so."""
from __future__ import annotations

import contextlib
import functools
import glob
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from eval_anything.errors import writing

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
RESULTS = "results.json"
SAMPLES_DIR = "samples"
_SHARD = re.compile(r"\.rank\d+-of-\d+\.jsonl")


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process's umask, read without setting it (os.umask sets it, racing other threads'
    file creation) where /proc says it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def normal_file_mode() -> int:
    """What open() gives a new file: 0666 less the umask (mkstemp's files are 0600)."""
    return 0o666 & ~_umask()


def _write_atomic(path: Path, write: Any) -> None:
    """`write(handle)` into a temporary file in the same folder, synced and given the process's
    normal file mode, then renamed over `path`."""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
                os.fchmod(handle.fileno(), normal_file_mode())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file in the same folder, sync it, then rename over the target."""
    def dump(handle: Any) -> None:
        json.dump(data, handle, indent=2, sort_keys=False, default=str)
        handle.write("\n")

    _write_atomic(path, dump)


def read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


class SampleLog:
    """Append-only JSONL of finished samples for one task.

    Lines are flushed and fsynced on `commit()`; a line torn by a crash is cut off on open.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = None

    def completed(self) -> dict[str, dict[str, Any]]:
        """Records already on disk, by sample id, after cutting any torn last line."""
        records: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return records
        good_bytes = 0
        with self.path.open("rb") as handle:
            for line in handle:
                if not line.endswith(b"\n"):
                    break
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break
                records[record["id"]] = record
                good_bytes += len(line)
        if good_bytes < self.path.stat().st_size:
            with writing(self.path), self.path.open("r+b") as handle:
                handle.truncate(good_bytes)
        return records

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with writing(self.path):
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = self.path.open("a", encoding="utf-8")
            self._handle.write(line)

    def commit(self) -> None:
        if self._handle is not None:
            with writing(self.path):
                self._handle.flush()
                os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Commit and close; the file is closed even when the commit fails (a line a full disk tore
        is cut when the log is next opened)."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            with writing(self.path):
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            with contextlib.suppress(OSError):  # the failed flush is the error to report
                handle.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.completed().values())


class RunDirectory:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    def samples(self, task: str) -> SampleLog:
        return SampleLog(self.path / SAMPLES_DIR / f"{task}.jsonl")

    def shard(self, task: str, rank: int, world: int) -> SampleLog:
        """The sample log one rank of a data-parallel run writes: `<task>.rank<r>-of-<w>.jsonl`."""
        return SampleLog(self.path / SAMPLES_DIR / f"{task}.rank{rank}-of-{world}.jsonl")

    def shards(self, task: str) -> list[SampleLog]:
        """Every rank's shard of `task` left on disk, whatever world size wrote it."""
        folder = self.path / SAMPLES_DIR
        return [SampleLog(p) for p in sorted(folder.glob(f"{glob.escape(task)}.rank*-of-*.jsonl"))
                if _SHARD.fullmatch(p.name[len(task):])]

    def merge_shards(self, task: str, order: Iterable[str]) -> int:
        """Fold every shard of `task` into `<task>.jsonl`, records in `order` (sample ids; any others
        after them), written atomically; the shards are removed once the merged log is durable.
        Returns how many shards were merged."""
        shards = self.shards(task)
        if not shards:
            return 0
        target = self.samples(task)
        records = target.completed()
        for shard in shards:
            records.update(shard.completed())
        def write(handle: Any) -> None:
            for sample_id in order:
                record = records.pop(sample_id, None)
                if record is not None:
                    handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            for record in records.values():
                handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")

        _write_atomic(target.path, write)
        for shard in shards:
            with writing(shard.path):
                shard.path.unlink(missing_ok=True)
        return len(shards)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.manifest_path, {"format_version": FORMAT_VERSION, **manifest})

    def read_manifest(self) -> dict[str, Any] | None:
        return read_json(self.manifest_path) if self.manifest_path.exists() else None

    def write_results(self, results: dict[str, Any]) -> None:
        write_json_atomic(self.results_path, {"format_version": FORMAT_VERSION, **results})

    def read_results(self) -> dict[str, Any] | None:
        return read_json(self.results_path) if self.results_path.exists() else None
