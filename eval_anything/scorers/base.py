"""The scorer interface and its registry."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from eval_anything.datamodel import ModelOutput, Request, Sample, Score
from eval_anything.errors import UsageError
from eval_anything.registry import Registry


@dataclass(frozen=True)
class Attempt:
    """One request and what the model answered to it."""

    request: Request
    output: ModelOutput


class Scorer(ABC):
    """Turns a sample's attempts into one Score.

    The runner only calls a scorer when every attempt generated without error, so scorers
    deal with answers, not failures.
    """

    name: str = "score"
    """The key of this scorer's scores and metric in results."""
    needs_judge: bool = False
    """Scored by a judge model through the judge engine rather than by `score`."""

    def bind_task(self, task_dir: Path) -> None:
        """Resolve paths the scorer's arguments give relative to the task's folder."""

    def choice_orders(self, choices: tuple[str, ...]) -> list[tuple[str, ...]]:
        """The orders in which a sample's choices are presented, one request each."""
        return [choices]

    @abstractmethod
    def score(self, sample: Sample, attempts: Sequence[Attempt]) -> Score: ...

    @staticmethod
    def summarize(scores: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Extra task-level figures from this scorer's per-sample scores (JSON form), for results."""
        return {}


class AnswerScorer(Scorer):
    """A scorer that reads one answer text (the first attempt's)."""

    def score(self, sample: Sample, attempts: Sequence[Attempt]) -> Score:
        return self.score_answer(sample, attempts[0].output.text)

    @abstractmethod
    def score_answer(self, sample: Sample, text: str) -> Score: ...


def path_in_task(path: str, task_dir: Path) -> str:
    """A scorer argument naming a file or folder: relative to the task's folder when it is there,
    else as given (absolute, or relative to where the run starts)."""
    candidate = task_dir / path
    return str(candidate) if not Path(path).is_absolute() and candidate.exists() else path


ScorerFactory = Callable[..., Scorer]
scorers: Registry[ScorerFactory] = Registry("scorer")


def scorer(name: str) -> Callable[[ScorerFactory], ScorerFactory]:
    """Register a scorer factory under a name; its keyword arguments come from task files."""
    return scorers.decorator(name)


def build_scorer(name: str, args: dict[str, Any] | None = None) -> Scorer:
    factory = scorers.get(name)
    try:
        instance = factory(**(args or {}))
    except TypeError as exc:
        raise UsageError(f"bad arguments for scorer {name!r}: {exc}") from None
    instance.name = name
    return instance
