"""The schema of a task file, validated strictly so a bad file names its field and its fault."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from eval_anything.datamodel import Modality


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
    aggregate: Literal["mean", "median"] = Field(
        default="mean", description="How per-sample scores combine: mean (analytic stderr) or median (bootstrap).")


class GenerationSettings(_Strict):
    max_new_tokens: int = Field(default=64, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list)


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
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    scorers: list[ScorerConfig] = Field(min_length=1)
    output_format: Literal["text", "tagged"] = Field(
        default="text", description="tagged: answers carry [[response]]/[[image_instruction]]/... sections, "
                                    "whose instructions generators render into media before scoring.")
    breakdown: list[str] = Field(
        default_factory=list, description="Columns whose values group the results (joined with +); "
                                          "'chosen' groups by the output modalities an answer chose.")

    @field_validator("input")
    @classmethod
    def _one_modality_per_part(cls, parts: list[dict[str, str]]) -> list[dict[str, str]]:
        if not parts:
            raise ValueError("at least one input part is needed")
        for part in parts:
            if len(part) != 1:
                raise ValueError("each input part maps exactly one modality to a column, e.g. {image: image}")
        return parts

    @field_validator("scorers", mode="before")
    @classmethod
    def _names_as_scorers(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _text_somewhere(self) -> "TaskConfig":
        has_text = any("text" in part for part in self.input)
        if not has_text and self.prompt is None:
            raise ValueError("a task needs a text input part or a prompt template")
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
