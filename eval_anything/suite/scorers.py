"""Scorers of the all-modality suite: the objective answer beside AMU's judge, modality
selection, modality synergy, and the S_AMG composite of AMG."""
from __future__ import annotations

import functools
import json
from typing import Any, Callable, Mapping, Sequence

from eval_anything.datamodel import Modality, ModelOutput, Part, Sample, Score
from eval_anything.judges.base import JudgeQuery, JudgeScorer, NotApplicable, Verdict, question_of
from eval_anything.judges.kinds import require_output
from eval_anything.judges.parsers import parse_choice, parse_rating
from eval_anything.judges.templates import Rubric
from eval_anything.scorers.base import AnswerScorer, Attempt, Scorer
from eval_anything.scorers.choice import LETTERS
from eval_anything.scorers.text import ExactMatch, NumericMatch
from eval_anything.suite.composite import pairs_of, s_amg
from eval_anything.suite.tagged import LETTER, chosen_modalities, combination

MODALITY_OF = {letter: modality for modality, letter in LETTER.items()}
NAMES = {"t": "text", "i": "image", "a": "audio", "v": "video"}


def votes_of(sample: Sample, column: str) -> dict[str, float]:
    votes = sample.metadata.get(column)
    if isinstance(votes, str):
        votes = json.loads(votes)
    if not isinstance(votes, Mapping) or not votes:
        raise ValueError(f"sample {sample.id!r}: column {column!r} must map combinations (t, ti, tia...) to vote shares")
    return {str(k): float(v) for k, v in votes.items() if v is not None}


class ObjectiveAnswer(AnswerScorer):
    """The rule-based score beside a judge's: numeric or exact match by the item's answer type;
    items without an objective answer are not applicable."""

    def __init__(self, type_column: str = "answer_type") -> None:
        self.type_column = type_column
        self.numeric, self.exact = NumericMatch(position="first"), ExactMatch()

    def score_answer(self, sample: Sample, text: str) -> Score:
        if not sample.target or not sample.target[0]:
            return Score.inapplicable("the item has no objective answer")
        kind = sample.metadata.get(self.type_column, "exact")
        return (self.numeric if kind == "numeric" else self.exact).score_answer(sample, text)


def objective_answer(type_column: str = "answer_type") -> ObjectiveAnswer:
    """Numeric or exact match by the item's `answer_type`; not applicable without an answer."""
    return ObjectiveAnswer(type_column)


class ModalitySelection(Scorer):
    """The human vote share of the output-modality combination the answer chose."""

    def __init__(self, votes: str = "selection") -> None:
        self.votes = votes

    def score(self, sample: Sample, attempts: Sequence[Attempt]) -> Score:
        chosen = combination(chosen_modalities(attempts[0].output))
        votes = votes_of(sample, self.votes)
        return Score(value=votes.get(chosen, 0.0), answer=chosen,
                     explanation=f"{votes.get(chosen, 0.0):.2f} of the votes chose {chosen}",
                     details={"chosen": chosen, "votes": votes})

    @staticmethod
    def summarize(scores: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """How often each combination was chosen, against how often humans preferred it."""
        chosen = [s["details"]["chosen"] for s in scores if s.get("details", {}).get("chosen")]
        votes = [s["details"]["votes"] for s in scores if s.get("details", {}).get("votes")]
        combos = sorted({*chosen, *(k for v in votes for k in v)}, key=lambda c: (len(c), c))
        return {"chosen_vs_human": {c: {"chosen": round(chosen.count(c) / len(chosen), 4) if chosen else None,
                                        "human": round(sum(v.get(c, 0.0) for v in votes) / len(votes), 4)
                                        if votes else None} for c in combos}}


def modality_selection(votes: str = "selection") -> ModalitySelection:
    """Score the chosen output combination by its human vote share (column `votes`)."""
    return ModalitySelection(votes)


def _rating_query(label: str, rubric: Rubric, low: float, high: float, media: Sequence[Part],
                  **variables: Any) -> JudgeQuery:
    return JudgeQuery(label, rubric.render(**variables), functools.partial(parse_rating, low=low, high=high),
                      tuple(media))


def _normalized(value: float, low: float, high: float) -> float:
    return (value - low) / (high - low)


class _GeneratedMedia:
    """The parts of an answer by modality letter, and instructions that made them."""

    def __init__(self, output: ModelOutput) -> None:
        self.output = output
        self.by_letter = {LETTER[p.modality]: p for p in output.parts if p.modality is not Modality.TEXT}
        self.tagged = output.metadata.get("tagged", {})

    def require(self, letters: str) -> None:
        for letter in letters:
            if letter != "t":
                require_output(self.output, MODALITY_OF[letter])

    def media(self, letters: str) -> list[Part]:
        return [self.by_letter[letter] for letter in letters if letter in self.by_letter]

    def described(self, letters: str) -> dict[str, str]:
        return {NAMES[l]: self.tagged.get(NAMES[l]) or self.by_letter[l].metadata.get("instruction", "")
                for l in letters if l != "t" and l in self.by_letter}


class SynergyJudge(JudgeScorer):
    """How well two output modalities work together, in [0, 1]: a judge's 1-10 rating, normalised,
    or sigmoid(reward) from a reward model when `reward_model` names one (which one is recorded).
    The item's score is the mean over the pairs that could be scored (stated in the task file)."""

    default_template = "synergy_pair"

    def __init__(self, pairs: Sequence[str] = ("ti", "ta", "ia"), reward_model: str | None = None,
                 **common: Any) -> None:
        super().__init__(**common)
        self.pairs = tuple(pairs)
        self.reward = None
        if reward_model:
            from eval_anything.judges.reward import RewardModelScorer

            self.reward = RewardModelScorer(reward_model)

    def pair_query(self, pair: str, sample: Sample, attempts: Sequence[Attempt], made: _GeneratedMedia) -> JudgeQuery:
        question, text = question_of(sample, attempts), made.output.text if "t" in pair else ""
        described = made.described(pair)
        if self.reward is not None:
            answer = "\n".join([text, *(f"[{kind}: {what}]" for kind, what in described.items())]).strip()
            return JudgeQuery(f"synergy {pair}", answer, lambda: _sigmoid(self.reward.reward(question, answer)))
        return _rating_query(f"synergy {pair}", self.rubric, 1, 10, made.media(pair), question=question,
                             text=text, described=described, first=NAMES[pair[0]], second=NAMES[pair[1]])

    def pair_value(self, verdict: Verdict) -> float:
        return verdict.value if self.reward is not None else _normalized(verdict.value, 1, 10)

    def queries(self, sample: Sample, attempts: Sequence[Attempt]) -> list[JudgeQuery]:
        made = _GeneratedMedia(attempts[0].output)
        possible = [pair for pair in self.pairs if all(l == "t" or l in made.by_letter for l in pair)]
        if not possible:
            made.require("".join(self.pairs))
        return [self.pair_query(pair, sample, attempts, made) for pair in possible]

    def conclude(self, sample: Sample, attempts: Sequence[Attempt], verdicts: Sequence[Verdict]) -> Score:
        by_pair = {v.label.split()[-1]: self.pair_value(v) for v in verdicts}
        missing = [p for p in self.pairs if p not in by_pair]
        return Score(value=sum(by_pair.values()) / len(by_pair), answer=json.dumps(by_pair),
                     explanation="mean synergy over " + ", ".join(by_pair)
                     + (f"; not made: {', '.join(missing)}" if missing else ""),
                     details={"synergy": by_pair, "scorer": "reward_model" if self.reward else "judge"})


def _sigmoid(x: float) -> float:
    import math

    return 1 / (1 + math.exp(-x))


def amg_synergy(pairs: Sequence[str] = ("ti", "ta", "ia"), reward_model: str | None = None,
                template: str | None = None, on_error: str = "exclude") -> SynergyJudge:
    """Synergy of output modality pairs, by a judge prompt or a reward model."""
    return SynergyJudge(pairs, reward_model, template=template, on_error=on_error)


class CompositeJudge(SynergyJudge):
    """S_AMG per prompt (suite/composite.py): for the combination the answer chose, each chosen
    modality's instruction following S_i (text: 1-10 rating; image: the 4/3/2/1 rubric out of 10;
    audio/video: the item's multiple-choice questions about the generated media when it has them,
    else a 1-10 rating), each pair's synergy S_ij, and α from the human votes. Every component is
    kept in the per-sample log."""

    def __init__(self, votes: str = "selection", reward_model: str | None = None, **common: Any) -> None:
        super().__init__(("ti", "ta", "ia"), reward_model, **common)
        self.votes = votes
        self.if_text = Rubric.find("instruction_following_1_10")
        self.if_image = Rubric.find("image_rubric_4321")
        self.mcq = Rubric.find("media_mcq")

    def queries(self, sample: Sample, attempts: Sequence[Attempt]) -> list[JudgeQuery]:
        made = _GeneratedMedia(attempts[0].output)
        chosen = combination(chosen_modalities(made.output))
        if len(chosen) < 2:
            return []  # no pair of output modalities: S_AMG is 0 whatever the judge would say
        made.require(chosen)
        question = question_of(sample, attempts)
        queries: list[JudgeQuery] = []
        for letter in chosen:
            queries += self._if_queries(letter, sample, question, made)
        return queries + [self.pair_query(pair, sample, attempts, made) for pair in pairs_of(chosen)]

    def _if_queries(self, letter: str, sample: Sample, question: str, made: _GeneratedMedia) -> list[JudgeQuery]:
        if letter == "t":
            return [_rating_query("if t", self.if_text, 1, 10, (), question=question, response=made.output.text)]
        if letter == "i":
            return [_rating_query("if i", self.if_image, 0, 10, made.media("i"), question=question,
                                  response=made.output.text)]
        items = sample.metadata.get(f"questions_{NAMES[letter]}")
        if not items:
            return [_rating_query(f"if {letter}", self.if_text, 1, 10, made.media(letter), question=question,
                                  response=f"(the {NAMES[letter]} that comes with this message)")]
        return [JudgeQuery(f"if {letter} q{k}",
                           self.mcq.render(question=item["question"], choices=item["choices"],
                                           letters=list(LETTERS[: len(item["choices"])])),
                           functools.partial(parse_choice, letters=LETTERS[: len(item["choices"])]), tuple(made.media(letter)))
                for k, item in enumerate(items)]

    def conclude(self, sample: Sample, attempts: Sequence[Attempt], verdicts: Sequence[Verdict]) -> Score:
        chosen = combination(chosen_modalities(attempts[0].output))
        if len(chosen) < 2:
            return Score(value=0.0, answer=chosen, explanation="a single output modality has no pair: S_AMG = 0",
                         details={"chosen": chosen, "S_i": {}, "S_ij": {}, "alpha": {}, "terms": {}})
        instruction_following: dict[str, float] = {}
        for letter in chosen:
            mine = [v for v in verdicts if v.label.split()[:2] == ["if", letter]]
            instruction_following[letter] = self._if_value(letter, sample, mine)
        synergy = {v.label.split()[-1]: self.pair_value(v) for v in verdicts if v.label.startswith("synergy")}
        value, parts = s_amg(chosen, instruction_following, synergy, votes_of(sample, self.votes))
        return Score(value=value, answer=chosen,
                     explanation=" + ".join(f"½·{p.alpha:.3f}·({p.s_i:.3f}+{p.s_j:.3f})·{p.s_ij:.3f}" for p in parts),
                     details={"chosen": chosen, "S_i": instruction_following, "S_ij": synergy,
                              "alpha": {p.pair: p.alpha for p in parts}, "terms": {p.pair: p.value for p in parts}})

    def _if_value(self, letter: str, sample: Sample, verdicts: Sequence[Verdict]) -> float:
        if letter == "t":
            return _normalized(verdicts[0].value, 1, 10)
        if letter == "i":
            return _normalized(verdicts[0].value, 0, 10)
        items = sample.metadata.get(f"questions_{NAMES[letter]}")
        if not items:
            return _normalized(verdicts[0].value, 1, 10)
        from eval_anything.judges.kinds import _answer_letter

        return sum(v.value == _answer_letter(item) for v, item in zip(verdicts, items)) / len(items)


def amg_composite(votes: str = "selection", reward_model: str | None = None, template: str | None = None,
                  on_error: str = "exclude") -> CompositeJudge:
    """S_AMG per prompt, with every component in the sample log."""
    return CompositeJudge(votes, reward_model, template=template, on_error=on_error)
