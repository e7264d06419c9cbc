"""The records that flow between stages. One field name per meaning, in every artefact.

An LLF record grows as it moves through the pipeline: `sample` fills `response`, `critique`
fills `critique`, `refine` fills `refinement`. `pairs` turns it into a PreferenceRecord
(chosen = refinement, rejected = response). The published align-anything files load into the
same two types (see data.py).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from eval_anything.datamodel import Modality, Part
from eval_anything.errors import UsageError


@dataclass(frozen=True)
class Media:
    """One media input of a prompt, by file path."""

    modality: str
    """image, audio or video."""
    path: str
    """A file; relative paths are relative to the file the record was read from."""

    def part(self) -> Part:
        return Part.of_file(Modality(self.modality), self.path)


@dataclass(frozen=True)
class LLFRecord:
    """A prompt and what the LLF stages made of it."""

    id: str
    """Stable across stages: the resume key and the join key."""
    prompt: str
    """The user's instruction x (text)."""
    media: tuple[Media, ...] = ()
    """Media inputs given with the prompt, in order, before the text."""
    response: str | None = None
    """The policy's answer y (sample), or the published response."""
    critique: str | None = None
    """Language feedback c on the response (critique stage, or the published critique)."""
    refinement: str | None = None
    """The improved answer y* (refine stage, or the published better response)."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Provenance (source file, subset, row)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "media", tuple(m if isinstance(m, Media) else Media(**m) for m in self.media))
        object.__setattr__(self, "metadata", dict(self.metadata))

    def parts(self, text: str | None = None) -> tuple[Part, ...]:
        """Media first, then the text (the prompt unless given): what the hf backend takes."""
        return (*(m.part() for m in self.media), Part.of_text(self.prompt if text is None else text))

    def with_(self, **changes: Any) -> "LLFRecord":
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "LLFRecord":
        known = {k: data[k] for k in ("id", "prompt", "media", "response", "critique", "refinement", "metadata")
                 if k in data}
        return cls(**known)


@dataclass(frozen=True)
class PreferenceRecord:
    """A binary preference: for `prompt` (+ media), `chosen` is better than `rejected`."""

    id: str
    prompt: str
    chosen: str
    rejected: str
    media: tuple[Media, ...] = ()
    source: str = "llf"
    """llf (chosen = refinement, rejected = response) or binary (the annotators' overall preference)."""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "media", tuple(m if isinstance(m, Media) else Media(**m) for m in self.media))
        object.__setattr__(self, "metadata", dict(self.metadata))

    def parts(self) -> tuple[Part, ...]:
        return (*(m.part() for m in self.media), Part.of_text(self.prompt))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "PreferenceRecord":
        known = {k: data[k] for k in ("id", "prompt", "chosen", "rejected", "media", "source", "metadata")
                 if k in data}
        return cls(**known)


def resolve_media(record: Any, base: Path) -> Any:
    """Make relative media paths absolute against the folder of the file they came from."""
    if not record.media:
        return record
    media = tuple(m if Path(m.path).is_absolute() else Media(m.modality, str((base / m.path).resolve()))
                  for m in record.media)
    return replace(record, media=media)


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UsageError(f"{path}:{number}: not JSON: {exc}") from None


def write_jsonl(path: Path, records: Iterable[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            data = record.to_json() if hasattr(record, "to_json") else record
            handle.write(json.dumps(data, ensure_ascii=False) + "\n")
