"""Multiple choice: read a letter or an option's text, optionally over every rotation."""
from __future__ import annotations

import re
import string
from typing import Sequence

from eval_anything.datamodel import Sample, Score
from eval_anything.scorers.base import Attempt, Scorer, scorer
from eval_anything.scorers.text import normalize

LETTERS = string.ascii_uppercase


def extract_choice(text: str, choices: Sequence[str]) -> int | None:
    """The index of the option the answer names, by letter or by option text; None if unclear."""
    letters = LETTERS[: len(choices)]
    explicit = re.search(rf"answer(?: is)?\s*[:\-]?\s*\(?([{letters}])\b", text, re.IGNORECASE)
    if explicit:
        return letters.index(explicit.group(1).upper())
    leading = re.match(rf"\s*\(?([{letters}])(?:[\).:,\s]|$)", text)
    if leading:
        return letters.index(leading.group(1))
    standalone = set(re.findall(rf"(?<![\w']) \(?([{letters}])\)?(?![\w'])", " " + text))
    if len(standalone) == 1:
        return letters.index(standalone.pop())
    answer = normalize(text)
    named = [i for i, c in enumerate(choices) if normalize(c) and re.search(rf"\b{re.escape(normalize(c))}\b", answer)]
    return named[0] if len(named) == 1 else None


class MultipleChoice(Scorer):
    def __init__(self, circular: bool = False) -> None:
        self.circular = circular

    def choice_orders(self, choices: tuple[str, ...]) -> list[tuple[str, ...]]:
        if not self.circular:
            return [choices]
        return [choices[k:] + choices[:k] for k in range(len(choices))]

    def score(self, sample: Sample, attempts: Sequence[Attempt]) -> Score:
        if not sample.choices or not sample.target:
            return Score.errored(f"sample {sample.id!r} needs choices and a target")
        picked: list[str] = []
        for attempt in attempts:
            shown = attempt.request.choices or sample.choices
            index = extract_choice(attempt.output.text, shown)
            if index is None:
                return Score(value=0.0, extraction_failed=True,
                             explanation=f"no option found in variant {attempt.request.variant}")
            picked.append(shown[index])
        correct = [normalize(choice) in {normalize(t) for t in sample.target} for choice in picked]
        explanation = f"{sum(correct)}/{len(correct)} orderings answered correctly" if self.circular else None
        return Score(value=float(all(correct)), answer=" | ".join(picked), explanation=explanation)


@scorer("multiple_choice")
def multiple_choice(circular: bool = False) -> MultipleChoice:
    """Pick the option by letter or text; with circular, every rotation must be right."""
    return MultipleChoice(circular)
