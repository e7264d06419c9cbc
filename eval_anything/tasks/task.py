"""A task: its samples, how each becomes model requests, and how answers are scored."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from eval_anything.datamodel import GenerationConfig, Modality, Part, Request, Sample, Score
from eval_anything.scorers import Attempt, Scorer, build_scorer
from eval_anything.scorers.choice import LETTERS
from eval_anything.tasks.config import MEDIA, TaskConfig, TaskFileError
from eval_anything.tasks.dataset import DataFileError, count_rows, iter_rows

PROMPT_TEMPLATES = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)


@dataclass(frozen=True)
class Task:
    config: TaskConfig
    base_dir: Path
    """Where the task was declared; data and media paths are relative to it."""
    source: str = ""
    """The file (or Python function) that declared the task, for error messages."""
    scorers: tuple[Scorer, ...] = field(init=False)

    def __post_init__(self) -> None:
        built = []
        for index, spec in enumerate(self.config.scorers):
            try:
                built.append(build_scorer(spec.name, spec.args))
                built[-1].bind_task(self.base_dir)
            except (KeyError, ValueError) as exc:
                raise TaskFileError(f"invalid task file {self.source}:\n  field 'scorers.{index}': {exc}") from None
        object.__setattr__(self, "scorers", tuple(built))
        for protocol, variant in self.config.protocols.items():  # a bad variant fails at load, not when chosen
            for index, spec in enumerate(variant.scorers or ()):
                try:
                    build_scorer(spec.name, spec.args).bind_task(self.base_dir)
                except (KeyError, ValueError) as exc:
                    raise TaskFileError(f"invalid task file {self.source}:\n  field 'protocols.{protocol}.scorers."
                                        f"{index}': {exc}") from None
        if sum(len(s.choice_orders(("a", "b"))) > 1 for s in built) > 1:
            raise TaskFileError(f"invalid task file {self.source}: only one scorer may ask for choice rotations")
        if self.config.prompt is not None:
            try:
                PROMPT_TEMPLATES.parse(self.config.prompt)
            except jinja2.TemplateSyntaxError as exc:
                raise TaskFileError(
                    f"invalid task file {self.source}:\n  field 'prompt': template syntax error on line {exc.lineno}: {exc.message}"
                ) from None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def version(self) -> int | str:
        return self.config.version

    @cached_property
    def modalities(self) -> frozenset[Modality]:
        """Every input modality the task's items use (rows are scanned for `media` parts)."""
        declared = self.config.modalities
        if not any(MEDIA in part for part in self.config.input):
            return declared
        return declared | frozenset(m for sample in self.samples() for m in sample.modalities)

    @property
    def data_path(self) -> Path:
        return self._data_path

    @cached_property
    def _data_path(self) -> Path:  # resolved once: every row's error context names it
        return (self.base_dir / self.config.dataset.path).resolve()

    @cached_property
    def content_hash(self) -> str:
        """sha256 over the task definition (templates included) and its data file. A task file is
        hashed as written, so a new optional field in a later eval-anything changes no hash."""
        definition = Path(self.source)
        if definition.suffix in (".yaml", ".yml") and definition.is_file():
            digest = hashlib.sha256(definition.read_bytes())
        else:
            digest = hashlib.sha256(json.dumps(self.config.model_dump(mode="json", exclude_defaults=True),
                                               sort_keys=True).encode())
        with self.data_path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if self.config.protocol is not None:  # the same file scored under another protocol is another task
            digest.update(f"\0protocol={self.config.protocol}".encode())
        return digest.hexdigest()

    @property
    def protocol(self) -> str | None:
        """The scoring protocol this task runs under (e.g. paper), or None for a task that has one way only."""
        return self.config.protocol

    def under(self, protocol: str | None) -> "Task":
        """This task scored under another of its protocols (itself when it has no such choice)."""
        config = self.config.under(protocol)
        return self if config is self.config else Task(config, self.base_dir, self.source)

    def count(self) -> int:
        total = count_rows(self.data_path)
        return min(total, self.config.dataset.limit) if self.config.dataset.limit else total

    def samples(self, limit: int | None = None) -> Iterator[Sample]:
        limits = [n for n in (limit, self.config.dataset.limit) if n]
        cap = min(limits) if limits else None
        seen: set[str] = set()
        for row_index, row in enumerate(iter_rows(self.data_path)):
            if cap is not None and row_index >= cap:
                return
            sample = self._sample_from_row(row, row_index)
            if sample.id in seen:
                raise DataFileError(f"{self.data_path}: row {row_index + 1}: duplicate id {sample.id!r}")
            seen.add(sample.id)
            yield sample

    def _sample_from_row(self, row: Mapping[str, Any], row_index: int) -> Sample:
        cfg = self.config
        where = f"{self.data_path}: row {row_index + 1}"
        sample_id = str(row.get(cfg.id_field, row_index))
        parts = []
        for spec in cfg.input:
            ((kind, column),) = spec.items()
            if column not in row:
                raise DataFileError(f"{where}: missing column {column!r} (task input {kind})")
            value = row[column]
            if kind == Modality.TEXT.value:
                parts.append(Part.of_text(str(value)))
                continue
            path = self._media_path(value, where, column)
            modality = media_modality(path, where, column) if kind == MEDIA else Modality(kind)
            parts.append(Part.of_file(modality, path, column=column))
        choices = tuple(str(c) for c in as_list(row.get(cfg.choices))) if cfg.choices else ()
        target = tuple(str(t) for t in as_list(row.get(cfg.target))) if cfg.target else ()
        if choices:
            target = tuple(letter_to_choice(t, choices) for t in target)
        return Sample(id=sample_id, input=tuple(parts), target=target, choices=choices, metadata=row)

    def _media_path(self, value: Any, where: str, column: str) -> Path:
        text = str(value)
        if "://" in text:
            raise DataFileError(f"{where}: column {column!r} holds a URL ({text}); download the file and give its path")
        path = Path(text)
        return path if path.is_absolute() else (self.data_path.parent / path)

    def requests(self, sample: Sample, generation: GenerationConfig) -> list[Request]:
        orders = max((s.choice_orders(sample.choices) for s in self.scorers), key=len)
        return [self._request(sample, variant, order, generation) for variant, order in enumerate(orders)]

    def _request(self, sample: Sample, variant: int, choices: tuple[str, ...], generation: GenerationConfig) -> Request:
        if self.config.prompt is None:
            parts = sample.input
        else:
            text = self.render_prompt(sample, choices)
            parts = sample.media + (Part.of_text(text),)
        return Request(task=self.name, sample_id=sample.id, variant=variant, parts=parts, generation=generation,
                       choices=choices, system=self.config.system)

    def render_prompt(self, sample: Sample, choices: tuple[str, ...]) -> str:
        variables = dict(sample.metadata)
        variables.update(choices=list(choices), letters=list(LETTERS[: len(choices)]), sample_id=sample.id)
        try:
            return PROMPT_TEMPLATES.from_string(self.config.prompt or "").render(**variables).strip()
        except jinja2.UndefinedError as exc:
            raise DataFileError(f"task {self.name}: sample {sample.id!r}: prompt template: {exc.message}") from None

    def generation(self, seed: int, max_new_tokens: int | None = None,
                   temperature: float | None = None) -> GenerationConfig:
        g = self.config.generation
        return GenerationConfig(max_new_tokens=max_new_tokens or g.max_new_tokens,
                                temperature=g.temperature if temperature is None else temperature,
                                top_p=g.top_p, stop=tuple(g.stop), seed=seed)

    @property
    def judge_scorers(self) -> list[Scorer]:
        """Scorers that need a judge model; the runner hands them to the judge engine."""
        return [s for s in self.scorers if s.needs_judge]

    def score(self, sample: Sample, attempts: Sequence[Attempt]) -> dict[str, Score]:
        """Scores of every scorer that needs no judge model."""
        rule_scorers = [s for s in self.scorers if not s.needs_judge]
        failed = [a.output.error for a in attempts if a.output.error]
        if failed:
            return {s.name: Score.errored(f"generation failed: {failed[0]}") for s in rule_scorers}
        return {s.name: _score_safely(s, sample, attempts) for s in rule_scorers}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "hash": self.content_hash,
                "source": self.source, "modalities": sorted(m.value for m in self.modalities),
                "generation": self.config.generation.model_dump(), "prompt": self.config.prompt,
                "system": self.config.system, **({"protocol": self.protocol} if self.protocol else {})}


MEDIA_SUFFIXES = {Modality.IMAGE: (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"),
                  Modality.AUDIO: (".wav", ".mp3", ".flac", ".ogg", ".m4a"),
                  Modality.VIDEO: (".mp4", ".webm", ".mov", ".avi", ".mkv")}


def media_modality(path: Path, where: str, column: str) -> Modality:
    for modality, suffixes in MEDIA_SUFFIXES.items():
        if path.suffix.lower() in suffixes:
            return modality
    raise DataFileError(f"{where}: column {column!r}: cannot tell the modality of {path.name} from its extension")


def _score_safely(scorer: Scorer, sample: Sample, attempts: Sequence[Attempt]) -> Score:
    try:
        return scorer.score(sample, attempts)
    except Exception as exc:  # a scorer bug on one sample must not lose the run
        return Score.errored(f"scorer {scorer.name} raised {type(exc).__name__}: {exc}")


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                return list(json.loads(stripped))
            except json.JSONDecodeError:
                pass
        return [value]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def letter_to_choice(target: str, choices: tuple[str, ...]) -> str:
    letter = target.strip().upper()
    if len(letter) == 1 and letter in LETTERS[: len(choices)]:
        return choices[LETTERS.index(letter)]
    return target
