"""The schema of a task file, validated strictly so a bad file names its field and its fault."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from eval_anything.datamodel import Modality
from eval_anything.errors import UsageError


MEDIA = "media"
InputKind = Literal["text", "image", "audio", "video", "media"]


class TaskFileError(ValueError):
    """A task file (or Python task definition) is invalid; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(_Strict):
    path: str = Field(description="Data file (JSONL, JSON, CSV or parquet), relative to the task file.")
    limit: int | None = Field(default=None, ge=1, description="Use only the first N rows.")


class ScorerConfig(_Strict):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    aggregate: Literal["mean", "median", "weighted_mean"] = Field(
        default="mean", description="How per-sample scores combine: mean (analytic stderr), median (bootstrap), or "
                                    "weighted_mean (weights from each score's details.weight, e.g. its question count).")


class GenerationDefaults(_Strict):
    """A task's `generation:` block: how its answers are generated unless a run overrides it (the run
    turns it into each request's datamodel.GenerationConfig)."""

    max_new_tokens: int = Field(default=64, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list)


SectionsBy = Literal["tagged", "as_published", "instruction:image", "instruction:audio", "instruction:video"]


class ProtocolVariant(_Strict):
    """Another way to prompt and score the same items, selected with `--protocol NAME`: the fields
    given here replace the task's own."""

    description: str | None = None
    prompt: str | None = None
    system: str | None = None
    generation: GenerationDefaults | None = None
    scorers: list[ScorerConfig] | None = Field(default=None, min_length=1)
    breakdown: list[str] | None = None
    tagged_sections: SectionsBy | None = None

    @field_validator("scorers", mode="before")
    @classmethod
    def _names_as_scorers(cls, value: Any) -> Any:
        return _scorer_entries(value)


def _scorer_entries(value: Any) -> Any:
    if isinstance(value, list):
        return [{"name": v} if isinstance(v, str) else v for v in value]
    return value


class TaskConfig(_Strict):
    """A task: which data, how to render it into a prompt, how to score the answers."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    version: int | str = Field(description="Bump whenever data, prompt or scoring change.")
    description: str = ""
    tags: list[str] = Field(default_factory=list, description="Groups the task belongs to.")
    dataset: DatasetConfig
    id_field: str = Field(default="id", description="Column with unique item ids; row number if absent.")
    input: list[dict[InputKind, str]] = Field(
        description="Ordered input parts, each {modality: column}, e.g. [{image: image}, {text: question}]; "
                    "{media: column} takes the modality of each row's file from its extension."
    )
    target: str | None = Field(default=None, description="Column with the answer or list of answers.")
    choices: str | None = Field(default=None, description="Column with the list of options.")
    prompt: str | None = Field(default=None, description="Jinja2 template for the text prompt.")
    system: str | None = None
    generation: GenerationDefaults = Field(default_factory=GenerationDefaults)
    scorers: list[ScorerConfig] = Field(min_length=1)
    output_format: Literal["text", "tagged"] = Field(
        default="text", description="tagged: answers carry [[response]]/[[image_instruction]]/... sections, "
                                    "whose instructions generators render into media before scoring.")
    tagged_sections: SectionsBy = Field(
        default="tagged", description="How a tagged answer's used sections are read: tagged (ours: lenient), as_published (the "
                                      "original selection script's parser, quirks included), or instruction:MODALITY "
                                      "(the whole answer is one generator's instruction).")
    breakdown: list[str] = Field(
        default_factory=list, description="Columns whose values group the results (joined with +); "
                                          "'chosen' groups by the output modalities an answer chose.")

    @field_validator("input")
    @classmethod
    def _one_modality_per_part(cls, parts: list[dict[str, str]]) -> list[dict[str, str]]:
        if not parts:
            raise UsageError("at least one input part is needed")
        for part in parts:
            if len(part) != 1:
                raise UsageError("each input part maps exactly one modality to a column, e.g. {image: image}")
        return parts

    protocol: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9_-]*$",
        description="The name of the protocol the fields above implement (the suite's: paper, the original "
                    "authors' scripts); recorded with every run.")
    protocols: dict[str, ProtocolVariant] = Field(
        default_factory=dict, description="Other protocols of the same task, by name; `--protocol NAME` selects one.")

    @field_validator("scorers", mode="before")
    @classmethod
    def _names_as_scorers(cls, value: Any) -> Any:
        return _scorer_entries(value)

    @model_validator(mode="after")
    def _named_protocols(self) -> "TaskConfig":
        if self.protocols and self.protocol is None:
            raise UsageError("a task with other protocols names its own with `protocol:` (e.g. protocol: paper)")
        if self.protocol in self.protocols:
            raise UsageError(f"protocols: {self.protocol!r} is the task's own protocol; name the others differently")
        return self

    @property
    def protocol_names(self) -> list[str]:
        """Every protocol this task can be run under, its own first."""
        return [self.protocol, *self.protocols] if self.protocol else []

    def under(self, protocol: str | None) -> "TaskConfig":
        """This task as scored under `protocol` (None, or its own: unchanged)."""
        if protocol is None or protocol == self.protocol or not self.protocol:
            return self
        if protocol not in self.protocols:
            raise TaskFileError(f"task {self.name} has no protocol {protocol!r} (it has: {', '.join(self.protocol_names)})")
        variant = self.protocols[protocol]
        replaced = {k: v for k, v in variant if v is not None}
        return self.model_copy(update={**replaced, "protocol": protocol, "protocols": {}})

    @model_validator(mode="after")
    def _text_somewhere(self) -> "TaskConfig":
        has_text = any("text" in part for part in self.input)
        if not has_text and self.prompt is None:
            raise UsageError("a task needs a text input part or a prompt template")
        return self

    @property
    def modalities(self) -> frozenset[Modality]:
        """The modalities the input declares; files of `media` parts add theirs per row."""
        return frozenset(Modality(m) for part in self.input for m in part if m != MEDIA)


def _format_errors(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"] if p != "[key]") or "(top level)"
        lines.append(f"  field '{where}': {err['msg']}")
    return f"invalid task file {source}:\n" + "\n".join(lines)


def parse_task_config(data: Any, source: str) -> TaskConfig:
    if not isinstance(data, dict):
        raise TaskFileError(f"invalid task file {source}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return TaskConfig.model_validate(data)
    except ValidationError as exc:
        raise TaskFileError(_format_errors(source, exc)) from None


def load_task_file(path: Path) -> TaskConfig:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TaskFileError(f"invalid task file {path}: not valid YAML: {exc}") from None
    return parse_task_config(data, str(path))
