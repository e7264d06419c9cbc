"""The judge kinds: scalar rating (optionally reference-guided), pairwise preference asked in both
orders, and multiple-choice questions answered by a model about generated media (TIFA-style)."""
from __future__ import annotations

import functools
import json
from typing import Any, Sequence

from eval_anything.datamodel import Modality, Part, Sample, Score
from eval_anything.errors import UsageError
from eval_anything.judges.base import (JudgeQuery, JudgeScorer, NotApplicable, Verdict, instruction_of, media_for_judge,
                                       metadata_value, question_of)
from eval_anything.judges.parsers import (explanation_of, parse_bracketed_int, parse_choice, parse_letter_as_published,
                                          parse_pairwise, parse_rating, parse_score_and_explanation)
from eval_anything.scorers.base import Attempt
from eval_anything.scorers.choice import LETTERS


def rating_parser(reply: str, low: float, high: float) -> Any:
    """The parser of a rating reply by name: ours (`rating`: the first [[N]], on the scale) or the
    original scripts' (`bracketed_int`: AMU's; `score_and_explanation`: instruction following's)."""
    if reply == "rating":
        return functools.partial(parse_rating, low=low, high=high)
    parsers = {"bracketed_int": parse_bracketed_int, "score_and_explanation": parse_score_and_explanation}
    if reply not in parsers:
        raise UsageError(f"reply must be one of rating, {', '.join(parsers)}; not {reply!r}")
    return parsers[reply]


class RatingJudge(JudgeScorer):
    """A rating on a declared scale, e.g. 1-10, or 0-10 for the 4/3/2/1 image rubric.

    `reply` names the reply format and its parser (see `rating_parser`). A rating kept on its own
    scale (`normalize: false`) reports its [0, 1] value beside it in results (`normalized`)."""

    def __init__(self, scale: Sequence[float] = (1, 10), references: str | None = None, media: str = "both",
                 normalize: bool = False, requires: str | None = None, reply: str = "rating", **common: Any) -> None:
        super().__init__(**common)
        self.requires = Modality(requires) if requires else None
        if len(scale) != 2 or scale[0] >= scale[1]:
            raise UsageError("scale must be [low, high] with low < high")
        if media not in ("input", "output", "both", "none"):
            raise UsageError("media must be input, output, both or none")
        self.low, self.high = float(scale[0]), float(scale[1])
        self.references, self.media, self.normalize = references, media, normalize
        self.floor = 0.0 if normalize else self.low
        self.parse = rating_parser(reply, self.low, self.high)

    def queries(self, sample: Sample, attempts: Sequence[Attempt]) -> list[JudgeQuery]:
        if self.requires is not None:
            require_output(attempts[0].output, self.requires)
        references = metadata_value(sample, self.references, None) if self.references else list(sample.target)
        if isinstance(references, str):
            references = json.loads(references) if references.strip().startswith("[") else [references]
        text = self.rubric.render(question=question_of(sample, attempts), response=attempts[0].output.text,
                                  references=references or [], item=dict(sample.metadata),
                                  instruction=instruction_of(sample), scale=[self.low, self.high])
        return [JudgeQuery("rating", text, self.parse, media_for_judge(sample, attempts, self.media))]

    def judge_modalities(self, inputs: frozenset[Modality] = frozenset()) -> frozenset[Modality]:
        """The task's input media (media: input or both) and the generated `requires` modality
        (media: output or both); other generated media are not known before the answers."""
        carried = set(inputs) if self.media in ("input", "both") else set()
        if self.media in ("output", "both") and self.requires is not None:
            carried.add(self.requires)
        return frozenset(carried - {Modality.TEXT})

    def conclude(self, sample: Sample, attempts: Sequence[Attempt], verdicts: Sequence[Verdict]) -> Score:
        rating = verdicts[0].value
        value = (rating - self.low) / (self.high - self.low) if self.normalize else rating
        return Score(value=value, answer=f"{rating:g}", explanation=explanation_of(verdicts[0].raw[-1]))

    def summarize(self, scores: Sequence[Any]) -> dict[str, Any]:
        if self.normalize:
            return {}
        values = [s["value"] for s in scores if s["value"] is not None]
        if not values:
            return {}
        mean = sum(values) / len(values)
        return {"scale": [self.low, self.high], "normalized": (mean - self.low) / (self.high - self.low)}


def judge_rating(scale: Sequence[float] = (1, 10), references: str | None = None, media: str = "both",
                 normalize: bool = False, requires: str | None = None, reply: str = "rating",
                 **common: Any) -> RatingJudge:
    """A judge rates the answer on a scale (default 1-10); `references` names a column of reference
    answers (default: the targets); `normalize` maps the scale onto [0, 1]; `requires` names an
    output modality without which the item is not applicable (e.g. image, for generated images);
    `reply` the reply format (rating, bracketed_int, score_and_explanation). Every judge's common
    arguments (template, system_template, temperature, on_error, human_label) are taken too."""
    return RatingJudge(scale, references, media, normalize, requires, reply, **common)


class PairwiseJudge(JudgeScorer):
    """The model's answer against a baseline answer, asked in both orders to cancel position bias.

    Score: 1 when the model's answer wins both orders, 0 when it loses both, 0.5 otherwise.
    """

    default_template = "pairwise"

    def __init__(self, baseline: str | None = None, **common: Any) -> None:
        super().__init__(**common)
        self.baseline = baseline

    def judge_modalities(self, inputs: frozenset[Modality] = frozenset()) -> frozenset[Modality]:
        return frozenset(inputs) - {Modality.TEXT}  # the item's input media

    def queries(self, sample: Sample, attempts: Sequence[Attempt]) -> list[JudgeQuery]:
        ours = attempts[0].output.text
        theirs = str(metadata_value(sample, self.baseline, sample.target[0] if sample.target else ""))
        question = question_of(sample, attempts)
        media = sample.media
        return [JudgeQuery("model=A", self.rubric.render(question=question, answer_a=ours, answer_b=theirs),
                           parse_pairwise, media),
                JudgeQuery("model=B", self.rubric.render(question=question, answer_a=theirs, answer_b=ours),
                           parse_pairwise, media)]

    def conclude(self, sample: Sample, attempts: Sequence[Attempt], verdicts: Sequence[Verdict]) -> Score:
        as_a, as_b = verdicts[0].value, verdicts[1].value
        wins = (as_a == "A") + (as_b == "B")
        losses = (as_a == "B") + (as_b == "A")
        value = 1.0 if wins == 2 else 0.0 if losses == 2 else 0.5
        consistent = {("A", "B"), ("B", "A"), ("tie", "tie")}
        return Score(value=value, answer=f"model as A: {as_a}; model as B: {as_b}",
                     details={"position_consistent": (as_a, as_b) in consistent})


def judge_pairwise(baseline: str | None = None, template: str | None = None, on_error: str = "exclude",
                   human_label: str | None = None) -> PairwiseJudge:
    """A judge prefers the model's answer or a baseline answer (column `baseline`, default the
    target), asked in both orders."""
    return PairwiseJudge(baseline, template=template, on_error=on_error, human_label=human_label)


class MediaQuestionsJudge(JudgeScorer):
    """TIFA-style: multiple-choice questions about the generated media, answered by the judge model.

    `questions` names a column holding a list of {question, choices, answer} (answer: a letter or
    the option text). Score: the fraction answered correctly.
    """

    default_template = "media_mcq"

    def __init__(self, questions: str = "questions", modality: str = "audio", reply: str = "choice",
                 points: float = 1.0, **common: Any) -> None:
        super().__init__(**common)
        self.questions, self.modality = questions, Modality(modality)
        if reply not in ("choice", "letter_as_published"):
            raise UsageError(f"reply must be choice or letter_as_published, not {reply!r}")
        self.reply, self.points = reply, float(points)

    def system_variables(self) -> dict[str, Any]:
        return {"modality": self.modality.value}

    def judge_modalities(self, inputs: frozenset[Modality] = frozenset()) -> frozenset[Modality]:
        return frozenset({self.modality}) - {Modality.TEXT}  # the generated media the questions are about

    def queries(self, sample: Sample, attempts: Sequence[Attempt]) -> list[JudgeQuery]:
        require_output(attempts[0].output, self.modality)
        media = tuple(p for p in attempts[0].output.parts if p.modality is self.modality)
        return question_queries(self.rubric, _question_list(sample, self.questions), media, self.reply,
                                self.modality)

    def conclude(self, sample: Sample, attempts: Sequence[Attempt], verdicts: Sequence[Verdict]) -> Score:
        items = _question_list(sample, self.questions)
        correct = [v.value == expected_letter(item) for v, item in zip(verdicts, items)]
        unread = sum(v.value == "" for v in verdicts)
        per_question = [self.points * c for c in correct]
        return Score(value=sum(per_question) / len(per_question), answer="".join(v.value or "-" for v in verdicts),
                     explanation=f"{sum(correct)}/{len(correct)} questions answered correctly"
                     + (f"; {unread} replies held no letter A-D, scored as wrong (as the original does)" if unread else ""),
                     extraction_failed=bool(unread),
                     details={"questions": per_question, "weight": len(per_question),
                              **({"no_letter": unread} if unread else {})})


def question_queries(rubric: Any, items: Sequence[dict[str, Any]], media: tuple[Part, ...], reply: str,
                     modality: Modality, label: str = "q", system: str | None = None) -> list[JudgeQuery]:
    """One query per multiple-choice item about `media`: the rubric rendered with the question, the
    options (lettered, and as the published data wrote them: `choice`), and the reply's parser
    (`choice`: ours; `letter_as_published`: the original's)."""
    queries = []
    for index, item in enumerate(items):
        choices = [str(c) for c in item["choices"]]
        letters = LETTERS[: len(choices)]
        published = item.get("choice")
        text = rubric.render(question=item["question"], choices=choices, letters=list(letters), modality=modality.value,
                             choice=published if published is not None else
                             "\n".join(f"{l}. {c}" for l, c in zip(letters, choices)))
        parse = (parse_letter_as_published if reply == "letter_as_published"
                 else functools.partial(parse_choice, letters=letters))
        queries.append(JudgeQuery(f"{label}{index}", text, parse, media, system=system))
    return queries


def require_output(output: Any, modality: Modality) -> None:
    """Raise NotApplicable when the answer has no `modality` part, with the reason it was not made."""
    if not any(p.modality is modality for p in output.parts):
        reason = output.metadata.get("not_rendered", {}).get(modality.value)
        if reason is None and "tagged" in output.metadata:
            reason = f"the answer gave no {modality.value} instruction"
        raise NotApplicable(f"no generated {modality.value}" + (f": {reason}" if reason else ""))


def _question_list(sample: Sample, column: str) -> list[dict[str, Any]]:
    items = sample.metadata.get(column)
    if isinstance(items, str):
        items = json.loads(items)
    if not items or not all(isinstance(i, dict) and {"question", "choices", "answer"} <= set(i) for i in items):
        raise UsageError(f"sample {sample.id!r}: column {column!r} must be a list of {{question, choices, answer}}")
    return items


def expected_letter(item: dict[str, Any]) -> str:
    answer, choices = str(item["answer"]).strip(), [str(c) for c in item["choices"]]
    if len(answer) == 1 and answer.upper() in LETTERS[: len(choices)]:
        return answer.upper()
    return LETTERS[choices.index(answer)]


def judge_media_mcq(questions: str = "questions", modality: str = "audio", reply: str = "choice",
                    points: float = 1.0, **common: Any) -> MediaQuestionsJudge:
    """A media-capable judge answers the item's multiple-choice questions about the generated media.
    `reply`: choice (ours: [[X]] or a standalone letter; none is a parse error, re-asked) or
    letter_as_published (the original's: the first standalone A-D, none scores as wrong); `points`:
    the score of a right answer (the original's 10). Results carry `weight` (the number of
    questions) per item, so `aggregate: weighted_mean` averages over question rows as the original."""
    return MediaQuestionsJudge(questions, modality, reply, points, **common)
