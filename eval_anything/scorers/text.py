"""Rule-based scorers over answer text: exact match, regex, numeric match, token F1."""
from __future__ import annotations

import collections
import math
import re
import string

from eval_anything.datamodel import Sample, Score
from eval_anything.errors import UsageError
from eval_anything.scorers.base import AnswerScorer, scorer

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def normalize(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse white space (SQuAD-style)."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _no_target(sample: Sample) -> Score:
    return Score.errored(f"sample {sample.id!r} has no target to compare against")


class ExactMatch(AnswerScorer):
    def score_answer(self, sample: Sample, text: str) -> Score:
        if not sample.target:
            return _no_target(sample)
        answer = normalize(text)
        hit = any(answer == normalize(t) for t in sample.target)
        return Score(value=float(hit), answer=answer)


@scorer("exact_match")
def exact_match() -> ExactMatch:
    """Normalised exact match against any target."""
    return ExactMatch()


class RegexMatch(AnswerScorer):
    def __init__(self, pattern: str, group: int | None = None) -> None:
        try:
            self.pattern = re.compile(pattern)
        except re.error as exc:
            raise UsageError(f"invalid regex {pattern!r}: {exc}") from None
        self.group = group if group is not None else min(1, self.pattern.groups)

    def score_answer(self, sample: Sample, text: str) -> Score:
        if not sample.target:
            return _no_target(sample)
        match = self.pattern.search(text)
        if match is None:
            return Score(value=0.0, extraction_failed=True,
                         explanation=f"no match for /{self.pattern.pattern}/")
        answer = normalize(match.group(self.group) or "")
        return Score(value=float(any(answer == normalize(t) for t in sample.target)), answer=answer)


@scorer("regex")
def regex(pattern: str, group: int | None = None) -> RegexMatch:
    """Extract the answer with a regular expression, then match it exactly (normalised)."""
    return RegexMatch(pattern, group)


def parse_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


class NumericMatch(AnswerScorer):
    def __init__(self, tolerance: float = 1e-6, relative: float = 0.0, position: str = "last") -> None:
        if position not in ("first", "last"):
            raise UsageError("position must be 'first' or 'last'")
        self.tolerance, self.relative, self.position = tolerance, relative, position

    def score_answer(self, sample: Sample, text: str) -> Score:
        targets = [n for n in (parse_number(t) for t in sample.target) if n is not None]
        if not targets:
            return Score.errored(f"sample {sample.id!r} has no numeric target")
        found = _NUMBER.findall(text)
        if not found:
            return Score(value=0.0, extraction_failed=True, explanation="no number in the answer")
        answer = parse_number(found[-1] if self.position == "last" else found[0])
        if answer is None:
            return Score(value=0.0, extraction_failed=True, explanation="unreadable number")
        hit = any(math.isclose(answer, t, abs_tol=self.tolerance, rel_tol=self.relative) for t in targets)
        return Score(value=float(hit), answer=f"{answer:g}")


@scorer("numeric")
def numeric(tolerance: float = 1e-6, relative: float = 0.0, position: str = "last") -> NumericMatch:
    """Compare the first or last number in the answer to the target within a tolerance."""
    return NumericMatch(tolerance, relative, position)


def token_f1_of(prediction: str, reference: str) -> float:
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((collections.Counter(pred) & collections.Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


class TokenF1(AnswerScorer):
    def score_answer(self, sample: Sample, text: str) -> Score:
        if not sample.target:
            return _no_target(sample)
        return Score(value=max(token_f1_of(text, t) for t in sample.target), answer=normalize(text))


@scorer("token_f1")
def token_f1() -> TokenF1:
    """Bag-of-tokens F1 against the best-matching reference (SQuAD-style)."""
    return TokenF1()
