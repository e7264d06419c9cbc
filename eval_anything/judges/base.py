"""Model-judge scorers: each turns a sample into judge queries and the parsed verdicts into a Score."""
from __future__ import annotations

import dataclasses
import hashlib
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from eval_anything.datamodel import Modality, Part, Sample, Score
from eval_anything.errors import UsageError
from eval_anything.judges.templates import Rubric
from eval_anything.scorers.base import Attempt, Scorer

ERROR_POLICIES = ("exclude", "fail")


class NotApplicable(Exception):
    """The judge has nothing to judge for this sample (e.g. the media it needs were not made)."""


@dataclass(frozen=True)
class JudgeQuery:
    """One question to the judge model."""

    label: str
    """Which question of the sample this is (e.g. "order=AB", "q2")."""
    text: str
    """The rendered rubric."""
    parse: Callable[[str], Any]
    """Reply -> verdict; raises JudgeParseError when the reply is malformed."""
    media: tuple[Part, ...] = ()
    """Media the judge should see with the text, when its backend takes them."""
    system: str | None = None
    """The system message, when the protocol sends one."""
    local: Callable[[], Any] | None = None
    """Computes the verdict here instead of asking the judge model (e.g. a reward model)."""
    temperature: float | None = None
    """Sampling temperature for this query; None: the run's judge setting."""
    media_after_text: bool = False
    """Send the text first and the media after it (as the original image judge does)."""


@dataclass(frozen=True)
class Verdict:
    """What came back for one query, after any retries."""

    label: str
    value: Any = None
    """The parsed verdict; None when every attempt failed (see error)."""
    raw: tuple[str, ...] = ()
    """Every raw reply, in order, the malformed ones included."""
    error: str | None = None
    calls: int = 0
    """Model calls made for this query (cache hits excluded)."""
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    media_dropped: tuple[str, ...] = ()
    """Modalities the judge backend could not take, so it saw only the rest."""
    asked: Mapping[str, Any] = field(default_factory=dict)
    """What the judge was asked: system and user text, media by content hash, sampling (the audit)."""

    def accounting(self) -> dict[str, Any]:
        return {"calls": self.calls, "cached": self.cached, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "attempts": len(self.raw)}


class JudgeScorer(Scorer):
    """A scorer whose verdicts come from a judge model, run by the JudgeEngine.

    Arguments every judge takes: `template` (a built-in rubric name or a .jinja path relative to
    the task), `on_error` ("exclude": a judge failure is an error, excluded from the metric and
    counted — the default; "fail": it scores the bottom of the scale, and is counted too),
    `human_label` (a column with human judgements to measure the judge's agreement against),
    `system_template` (a rubric rendered with the item as `item` into the system message; none by
    default), `temperature` (the judge's sampling temperature for this scorer; default: the run's
    judge setting, greedy), `media_after_text` (the media follow the text in the judge's message;
    default: before it) and `strict_media` (a judge that cannot take the media this scorer's queries
    carry, see `judge_modalities`, is an error before the first judge call, naming the task, the
    judge and the modality; default false: such media are dropped and recorded as media_dropped).
    """

    default_template = "rating_1_10"
    floor: float = 0.0
    needs_judge = True

    def __init__(self, template: str | None = None, on_error: str = "exclude", human_label: str | None = None,
                 system_template: str | None = None, temperature: float | None = None,
                 media_after_text: bool = False, strict_media: bool = False) -> None:
        if on_error not in ERROR_POLICIES:
            raise UsageError(f"on_error must be one of {', '.join(ERROR_POLICIES)}")
        if temperature is not None and temperature < 0:
            raise UsageError(f"temperature must be 0 or more, not {temperature}")
        self.template_name = template or self.default_template
        self.on_error = on_error
        self.human_label = human_label
        self.rubric = _rubric_or_later(self.template_name)
        self.system_template = system_template
        self.system_rubric = _rubric_or_later(system_template) if system_template else None
        self.temperature = temperature
        self.media_after_text = media_after_text
        self.strict_media = bool(strict_media)

    def bind_task(self, task_dir: Path) -> None:
        self.rubric = Rubric.find(self.template_name, task_dir)
        if self.system_template:
            self.system_rubric = Rubric.find(self.system_template, task_dir)

    @property
    def rubric_hash(self) -> str:
        """What judged scores depend on of this scorer's templates (cache keys include it)."""
        if self.system_rubric is None:
            return self.rubric.hash
        return hashlib.sha256((self.rubric.hash + self.system_rubric.hash).encode()).hexdigest()

    def bind_judging(self, settings: Any) -> None:
        """Take what the run's judge settings give this scorer (e.g. a reward model) before judging."""

    def judge_modalities(self, inputs: frozenset[Modality] = frozenset()) -> frozenset[Modality]:
        """The media modalities this scorer's judge queries may carry, given the task's input
        modalities `inputs`: the judge engine routes them (--judge MODALITY=...) and, under
        `strict_media`, checks every judge they may go to takes them. Default: none (text only)."""
        return frozenset()

    def system_variables(self) -> dict[str, Any]:
        """What the system template may use besides the item."""
        return {}

    def prepared(self, sample: Sample, queries: Sequence[JudgeQuery]) -> list[JudgeQuery]:
        """The queries with this scorer's system message and sampling filled in where they set none."""
        system = (self.system_rubric.render(item=dict(sample.metadata), **self.system_variables())
                  if self.system_rubric else None)
        return [dataclasses.replace(q, system=q.system if q.system is not None else system,
                                    temperature=q.temperature if q.temperature is not None else self.temperature,
                                    media_after_text=q.media_after_text or self.media_after_text)
                if q.local is None else q for q in queries]

    def score(self, sample: Sample, attempts: Sequence[Attempt]) -> Score:
        raise RuntimeError(f"{self.name} is a judge scorer: it runs through the judge engine")

    @abstractmethod
    def queries(self, sample: Sample, attempts: Sequence[Attempt]) -> list[JudgeQuery]: ...

    @abstractmethod
    def conclude(self, sample: Sample, attempts: Sequence[Attempt], verdicts: Sequence[Verdict]) -> Score:
        """The score from verdicts that all parsed."""

    def finish(self, sample: Sample, attempts: Sequence[Attempt], verdicts: Sequence[Verdict]) -> Score:
        """The score, with the judge's raw replies and accounting kept beside it."""
        details: dict[str, Any] = {
            "judge": [{"label": v.label, "raw": list(v.raw), "verdict": v.value, "error": v.error,
                       **v.accounting(), **({"media_dropped": list(v.media_dropped)} if v.media_dropped else {}),
                       **({"asked": dict(v.asked)} if v.asked else {})}
                      for v in verdicts]}
        if self.human_label is not None and self.human_label in sample.metadata:
            details["human"] = sample.metadata[self.human_label]
        failed = [v for v in verdicts if v.error]
        if failed:
            reason = f"judge error ({failed[0].label}): {failed[0].error}"
            details["judge_error"] = reason
            if self.on_error == "fail":
                return Score(value=self.floor, explanation=f"counted as a failure: {reason}", details=details)
            return Score.errored(reason, **details)
        result = self.conclude(sample, attempts, verdicts)
        return Score(value=result.value, answer=result.answer, explanation=result.explanation, error=result.error,
                     extraction_failed=result.extraction_failed, details={**details, **result.details})


def _rubric_or_later(name: str) -> Rubric:
    """A rubric found now, or, for a .jinja path relative to a task not bound yet, a placeholder that
    `bind_task` replaces (a misspelt built-in name still fails at once)."""
    if name.endswith((".jinja", ".j2")) and not Path(name).is_absolute() and not Path(name).is_file():
        return Rubric(name, Path(name))
    return Rubric.find(name)


def question_of(sample: Sample, attempts: Sequence[Attempt]) -> str:
    """What the model was asked: the rendered prompt of its first request."""
    return attempts[0].request.prompt_text


def instruction_of(sample: Sample) -> str:
    """The item's own instruction: its first text input as the data gives it, without the task's
    prompt template around it (what the original scripts show their judges)."""
    return next((p.text for p in sample.input if p.modality is Modality.TEXT and p.text is not None), "")


def media_for_judge(sample: Sample, attempts: Sequence[Attempt], which: str) -> tuple[Part, ...]:
    """The media the judge sees: the item's input media, the generated media, both or none."""
    inputs = sample.media if which in ("input", "both") else ()
    outputs = tuple(p for p in attempts[0].output.parts if p.modality is not Modality.TEXT) \
        if which in ("output", "both") else ()
    return inputs + outputs


def metadata_value(sample: Sample, column: str | None, default: Any = None) -> Any:
    return sample.metadata.get(column, default) if column else default


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
