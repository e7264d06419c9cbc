"""The ground floor: typed, frozen records for what flows through an evaluation.

Nothing here imports the rest of the package, torch or transformers.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field, asdict
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping


class Modality(str, enum.Enum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"


class _StatusValue(str, enum.Enum):
    """A status written to JSON as its plain string: json.dumps, str(), f-strings and CSV give the
    value ("complete"), and a member equals (and hashes as) that string as read back from a file."""

    def __str__(self) -> str:
        return str.__str__(self)

    __format__ = str.__format__


class Status(_StatusValue):
    """How a task, a group (a composite such as AMU) or a leaderboard cell came out: the "status" of
    results.json's tasks and groups, and of the leaderboard's cells. A run's own progress is
    RunStatus, a different record; the two share only the string "complete"."""

    COMPLETE = "complete"
    """A task that ran over its samples (some may have errored; its counts say so); a group whose
    members all have the metric; a leaderboard cell with a value."""
    NOT_APPLICABLE = "not_applicable"
    """A task the model cannot take (an input modality it lacks), with a reason; a group whose missing
    members are all not applicable; a leaderboard cell shown as n/a. Kept on resume, never rerun."""
    ERROR = "error"
    """A task stopped by a bad data file (before or during generation), with the reason; a leaderboard
    cell for such a task or for an incomplete group."""
    INCOMPLETE = "incomplete"
    """Groups only: a member lacks the metric and not all the missing ones are inapplicable."""
    ABSENT = "absent"
    """Leaderboard cells only: the run has no entry or no value for the column; never in results.json."""


class RunStatus(_StatusValue):
    """Where a whole run stands: the top-level "status" of an evaluation's manifest.json and
    results.json, and of an align stage artefact's manifest.json."""

    RUNNING = "running"
    """Written when a run starts and with each task's results (results.json is rewritten after every
    task), so also what a killed run leaves; an align artefact still being written."""
    COMPLETE = "complete"
    """Every task ran; an align artefact holds all its records (a rerun with the same identity skips it)."""
    INTERRUPTED = "interrupted"
    """The run stopped (an exception, Ctrl-C) before every task ran; rerunning it resumes."""


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class Part:
    """One piece of input or output content."""

    modality: Modality
    """What kind of content this is."""
    text: str | None = None
    """The text, for text parts."""
    path: str | None = None
    """A file holding the media, for media parts given by path."""
    data: bytes | None = None
    """The encoded media bytes (PNG, WAV, MP4...), for media parts given inline."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Anything else known about the part (mime type, sampling rate, source column)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "modality", Modality(self.modality))
        object.__setattr__(self, "metadata", _frozen_mapping(self.metadata))
        if self.modality is Modality.TEXT:
            if self.text is None:
                raise ValueError("a text part needs text")
        elif self.path is None and self.data is None:
            raise ValueError(f"a {self.modality.value} part needs a path or data")

    @classmethod
    def of_text(cls, text: str) -> "Part":
        return cls(Modality.TEXT, text=text)

    @classmethod
    def of_file(cls, modality: Modality | str, path: str | Path, **metadata: Any) -> "Part":
        return cls(Modality(modality), path=str(path), metadata=metadata)

    def reference(self) -> dict[str, Any]:
        """A JSON-safe description that names the content without embedding media bytes."""
        out: dict[str, Any] = {"modality": self.modality.value}
        if self.text is not None:
            out["text"] = self.text
        if self.path is not None:
            out["path"] = self.path
        if self.data is not None:
            out["bytes"] = len(self.data)
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


@dataclass(frozen=True)
class Sample:
    """One item of a task's dataset."""

    id: str
    """Unique within the task; the key used for resume and for replayed predictions."""
    input: tuple[Part, ...]
    """The item's input parts, in order."""
    target: tuple[str, ...] = ()
    """Accepted answers or references; scorers compare outputs against these."""
    choices: tuple[str, ...] = ()
    """Answer options, for multiple-choice items."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """The item's other fields; prompt templates can use them."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "input", tuple(self.input))
        object.__setattr__(self, "target", tuple(self.target))
        object.__setattr__(self, "choices", tuple(self.choices))
        object.__setattr__(self, "metadata", _frozen_mapping(self.metadata))

    @property
    def modalities(self) -> frozenset[Modality]:
        return frozenset(part.modality for part in self.input)

    @property
    def media(self) -> tuple[Part, ...]:
        return tuple(part for part in self.input if part.modality is not Modality.TEXT)


@dataclass(frozen=True)
class GenerationConfig:
    """How to generate; greedy by default so runs are reproducible."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    """Generation ends at the first of these strings, which is cut from the output."""
    seed: int = 1234
    repetition_penalty: float = 1.0
    """Above 1, tokens already in the prompt or the answer become less likely (the CTRL penalty that
    transformers and vLLM apply); 1 leaves the distribution as it is."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be positive")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class Turn:
    """One earlier turn of a conversation, as text."""

    role: str
    """user or assistant."""
    text: str


@dataclass(frozen=True)
class Request:
    """One generation to perform: a sample rendered into model input."""

    task: str
    """The task the sample belongs to."""
    sample_id: str
    variant: int
    """Which rendering of the sample (e.g. a rotation of its choices); 0 for most tasks."""
    parts: tuple[Part, ...]
    """Media parts in order, then the rendered prompt text."""
    generation: GenerationConfig
    choices: tuple[str, ...] = ()
    """The choices in the order this variant presents them."""
    system: str | None = None
    """An optional system message."""
    repeat: int = 0
    """Which of a sample's repeated generations (`--repeats K`) this is; each has its own seed."""
    history: tuple[Turn, ...] = ()
    """Earlier turns, oldest first, before the user turn `parts` make; the media of `parts` go
    into the first user turn (where a conversation about them starts). Empty for a single turn."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.parts))
        object.__setattr__(self, "choices", tuple(self.choices))
        object.__setattr__(self, "history", tuple(self.history))
        if self.history and self.history[0].role != "user":
            raise ValueError("a conversation's history starts with a user turn")

    @property
    def prompt_text(self) -> str:
        return "\n".join(p.text for p in self.parts if p.modality is Modality.TEXT and p.text)

    @property
    def modalities(self) -> frozenset[Modality]:
        return frozenset(part.modality for part in self.parts)


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class ModelOutput:
    """What a model returned for one request."""

    text: str = ""
    """The answer text after stop strings are cut."""
    raw_text: str = ""
    """Everything the model produced, before post-processing."""
    parts: tuple[Part, ...] = ()
    """Output parts by modality: the text and any generated media."""
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    """Wall time for this output; a batch's time is split evenly among its rows."""
    error: str | None = None
    """Why generation failed; when set, the output is not scored."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Backend notes, e.g. that a video was given as sampled frames."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.parts))
        object.__setattr__(self, "metadata", _frozen_mapping(self.metadata))

    @classmethod
    def failed(cls, reason: str, **metadata: Any) -> "ModelOutput":
        return cls(error=reason, metadata=metadata)

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "raw_text": self.raw_text,
            "parts": [p.reference() for p in self.parts],
            "usage": asdict(self.usage),
            "latency_s": round(self.latency_s, 6),
            "error": self.error,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ModelOutput":
        return cls(
            text=data.get("text", ""),
            raw_text=data.get("raw_text", ""),
            parts=tuple(_part_from_reference(p) for p in data.get("parts", ())),
            usage=Usage(**data.get("usage", {})),
            latency_s=data.get("latency_s", 0.0),
            error=data.get("error"),
            metadata=data.get("metadata", {}),
        )


def _part_from_reference(ref: Mapping[str, Any]) -> Part:
    return Part(
        Modality(ref["modality"]),
        text=ref.get("text"),
        path=ref.get("path"),
        metadata=ref.get("metadata", {}),
    )


@dataclass(frozen=True)
class Score:
    """One scorer's verdict on one sample."""

    value: float | None
    """The score; None when the sample could not be scored (see error)."""
    answer: str | None = None
    """What the scorer extracted from the output; None when extraction failed."""
    explanation: str | None = None
    """Why this value, in words."""
    error: str | None = None
    """Why no score could be given (a failed generation, a missing prediction...)."""
    extraction_failed: bool = False
    """The output held no answer the scorer could read; the value counts it as wrong."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Scorer-specific facts: a judge's raw replies, calls, tokens, what media it saw."""
    not_applicable: str | None = None
    """Why this scorer does not apply to this sample (e.g. no objective answer, no generator for
    the modality); such a score has no value, is no error, and is left out of the metric."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", _frozen_mapping(self.details))
        if self.not_applicable is not None:
            if self.value is not None or self.error is not None:
                raise ValueError("a not-applicable score has neither a value nor an error")
        elif (self.value is None) == (self.error is None):
            raise ValueError("a score has either a value or an error, not both or neither")

    @classmethod
    def errored(cls, reason: str, **details: Any) -> "Score":
        return cls(value=None, error=reason, details=details)

    @classmethod
    def inapplicable(cls, reason: str, **details: Any) -> "Score":
        return cls(value=None, not_applicable=reason, details=details)

    def to_json(self) -> dict[str, Any]:
        data = {"value": self.value, "answer": self.answer, "explanation": self.explanation,
                "error": self.error, "extraction_failed": self.extraction_failed}
        if self.not_applicable is not None:
            data["not_applicable"] = self.not_applicable
        if self.details:
            data["details"] = dict(self.details)
        return data


@dataclass(frozen=True)
class SampleResult:
    """Everything recorded about one sample: the durable unit of a run."""

    sample_id: str
    requests: tuple[Request, ...]
    outputs: tuple[ModelOutput, ...]
    scores: Mapping[str, Score]
    """Scorer name -> score."""
    target: tuple[str, ...] = ()
    """The sample's targets, kept beside the outputs for reading the log."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", _frozen_mapping(self.scores))
        object.__setattr__(self, "target", tuple(self.target))

    @property
    def errored(self) -> bool:
        return any(score.error is not None for score in self.scores.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.sample_id,
            "requests": [
                {
                    "variant": r.variant,
                    **({"repeat": r.repeat} if r.repeat else {}),
                    "input": [p.reference() for p in r.parts],
                    "prompt": r.prompt_text,
                    "choices": list(r.choices),
                }
                for r in self.requests
            ],
            "target": list(self.target),
            "outputs": [o.to_json() for o in self.outputs],
            "scores": {name: s.to_json() for name, s in self.scores.items()},
        }
