"""Typed, resumable stage artefacts: a folder with records.jsonl and manifest.json.

* The manifest names the stage, its config (and hash), its inputs (with content hashes), the
  model, status (running/complete), the record count and a hash over the records.
* Records are appended and fsynced per batch; a line torn by a crash is cut off on reopen
  (rundir.SampleLog), and records already present are skipped on resume, so a killed stage
  resumes without duplicates.
* A stage whose artefact is complete with the same identity (config hash + input hashes) does
  nothing when rerun. A folder made with a different identity is refused rather than mixed.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from eval_anything import __version__
from eval_anything.datamodel import RunStatus
from eval_anything.files import file_sha256
from eval_anything.rundir import SampleLog, read_json, write_json_atomic

FORMAT_VERSION = 1
RECORDS = "records.jsonl"
MANIFEST = "manifest.json"
_FULL_HASH_BYTES = 64 * 2**20
_DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".yaml", ".yml", ".csv", ".txt")


class ArtifactMismatch(ValueError):
    """An output folder already holds a different stage run (another config or other inputs)."""


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def fingerprint(path: str | Path) -> dict[str, Any]:
    """What an input is, by content: an artefact's records hash, a file's sha256, or for a
    folder (a model) a hash over its files' names, sizes and contents (files over 64 MiB by
    size plus their first and last MiB). A model behind `hf:`/`vllm:` or a Hub id ORG/NAME[@REV] is
    fingerprinted as the folder it resolves to, with the Hub commit (repo_id, revision, commit)."""
    text = str(path)
    if ":" in text and not Path(text).exists():  # embedded:NAME and other backend references
        from eval_anything.models import cached_weights_dir, known_traits

        backend, _, rest = text.partition(":")
        traits = known_traits(backend)
        if traits is not None and traits.cached_weights:
            return {**fingerprint(cached_weights_dir(backend)), "path": text}
        if traits is not None and traits.local_weights:  # hf:DIR, hf:ORG/NAME[@REV], vllm:...
            return {**_weights_fingerprint(rest), "path": text}
        return {"path": text, "sha256": None}
    p = Path(text).resolve()
    if not p.exists() and _may_be_hub_id(text):
        try:
            return {**_weights_fingerprint(text), "path": text}  # a Hub id ORG/NAME[@REV]
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"input {p} does not exist ({exc})") from None
    if (p / MANIFEST).exists() and (p / RECORDS).exists():
        manifest = read_json(p / MANIFEST)
        return {"path": str(p), "sha256": manifest.get("records_sha256"), "kind": manifest.get("stage")}
    if p.is_file():
        return {"path": str(p), "sha256": file_sha256(p)}
    if p.is_dir():
        digest = hashlib.sha256()
        for item in sorted(q for q in p.rglob("*") if q.is_file() and "checkpoint-" not in q.as_posix()):
            size = item.stat().st_size
            digest.update(f"{item.relative_to(p).as_posix()}\0{size}\0".encode())
            with item.open("rb") as handle:
                if size <= _FULL_HASH_BYTES:
                    digest.update(handle.read())
                else:
                    digest.update(handle.read(2**20))
                    handle.seek(-(2**20), 2)
                    digest.update(handle.read())
        return {"path": str(p), "sha256": digest.hexdigest()}
    raise FileNotFoundError(f"input {p} does not exist")


def _may_be_hub_id(text: str) -> bool:
    """Written as ORG/NAME[@REV] rather than as a data file that is missing."""
    from eval_anything.models.weights import names_a_path

    return text.count("/") == 1 and not names_a_path(text) and not text.endswith(_DATA_SUFFIXES)


def _weights_fingerprint(name: str) -> dict[str, Any]:
    """A local model folder's fingerprint, or a Hub id's: its cached snapshot's, with the repo id, the
    revision asked for and the commit it resolved to (models/weights.py)."""
    from eval_anything.models.weights import resolve_weights

    weights = resolve_weights(name)
    return {**fingerprint(weights.path), **weights.identity()}


def identity_hash(config_hash: str, inputs: Iterable[Mapping[str, Any]]) -> str:
    text = json.dumps({"config": config_hash, "inputs": [i.get("sha256") for i in inputs]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class Artifact:
    """One stage's output folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def records_path(self) -> Path:
        return self.path / RECORDS

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def manifest(self) -> dict[str, Any] | None:
        return read_json(self.manifest_path) if self.manifest_path.exists() else None

    @property
    def complete(self) -> bool:
        return (self.manifest() or {}).get("status") == RunStatus.COMPLETE

    def open(self, stage: str, config: Any, inputs: list[dict[str, Any]], model: Any = None) -> bool:
        """Start or resume the stage; True when it is already complete with this identity (nothing to do)."""
        identity = identity_hash(config.config_hash(), inputs)
        existing = self.manifest()
        if existing is not None:
            if existing.get("identity") != identity:
                raise ArtifactMismatch(
                    f"{self.path} holds a {existing.get('stage')} run with another config or other inputs "
                    f"(identity {str(existing.get('identity'))[:12]}, now {identity[:12]}); "
                    "choose a new output_dir or delete it")
            if existing.get("status") == RunStatus.COMPLETE:
                return True
        self._manifest = {
            "format_version": FORMAT_VERSION, "stage": stage, "status": RunStatus.RUNNING,
            "identity": identity, "config": config.to_dict(), "config_hash": config.config_hash(),
            "inputs": inputs, "model": model, "eval_anything": __version__,
            "started_at": (existing or {}).get("started_at") or now(),
        }
        write_json_atomic(self.manifest_path, self._manifest)
        return False

    def log(self) -> SampleLog:
        return SampleLog(self.records_path)

    def done(self) -> dict[str, dict[str, Any]]:
        """Records already written (a torn last line is cut off), by id."""
        return self.log().completed()

    def finish(self, **extra: Any) -> dict[str, Any]:
        records = list(self.done().values()) if self.records_path.exists() else []
        digest = file_sha256(self.records_path) if self.records_path.exists() else hashlib.sha256().hexdigest()
        manifest = {**self._manifest, **extra, "status": RunStatus.COMPLETE, "count": len(records),
                    "records_sha256": digest, "finished_at": now()}
        write_json_atomic(self.manifest_path, manifest)
        return manifest

    def records(self, decode: Callable[[dict[str, Any]], Any] = lambda r: r) -> list[Any]:
        return [decode(r) for r in self.done().values()]


def write_records(artifact: Artifact, records: Iterable[Any]) -> int:
    """Append records not yet present (by id), fsync, and return how many were written."""
    done = artifact.done()
    log = artifact.log()
    written = 0
    try:
        for record in records:
            data = record.to_json() if hasattr(record, "to_json") else dict(record)
            if data["id"] in done:
                continue
            log.append(data)
            done[data["id"]] = data
            written += 1
        log.commit()
    finally:
        log.close()
    return written
