"""Model-judge scorers: each turns a sample into judge queries and the parsed verdicts into a Score."""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from eval_anything.datamodel import Modality, Part, Sample, Score
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
    local: Callable[[], Any] | None = None
    """Computes the verdict here instead of asking the judge model (e.g. a reward model)."""


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

    def accounting(self) -> dict[str, Any]:
        return {"calls": self.calls, "cached": self.cached, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "attempts": len(self.raw)}


class JudgeScorer(Scorer):
    """A scorer whose verdicts come from a judge model, run by the JudgeEngine.

    Arguments every judge takes: `template` (a built-in rubric name or a .jinja path relative to
    the task), `on_error` ("exclude": a judge failure is an error, excluded from the metric and
    counted — the default; "fail": it scores the bottom of the scale, and is counted too),
    `human_label` (a column with human judgements to measure the judge's agreement against).
    """

    default_template = "rating_1_10"
    floor: float = 0.0
    needs_judge = True

    def __init__(self, template: str | None = None, on_error: str = "exclude", human_label: str | None = None) -> None:
        if on_error not in ERROR_POLICIES:
            raise ValueError(f"on_error must be one of {', '.join(ERROR_POLICIES)}")
        self.template_name = template or self.default_template
        self.on_error = on_error
        self.human_label = human_label
        self.rubric = Rubric.find(self.template_name)

    def bind_task(self, task_dir: Path) -> None:
        self.rubric = Rubric.find(self.template_name, task_dir)

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
                       **v.accounting(), **({"media_dropped": list(v.media_dropped)} if v.media_dropped else {})}
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


def question_of(sample: Sample, attempts: Sequence[Attempt]) -> str:
    """What the model was asked: the rendered prompt of its first request."""
    return attempts[0].request.prompt_text


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
