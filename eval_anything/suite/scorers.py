"""Scorers of the all-modality suite: the objective answer beside AMU's judge, modality
selection, modality synergy, and the S_AMG composite of AMG."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from eval_anything.datamodel import Modality, ModelOutput, Part, Sample, Score
from eval_anything.errors import UsageError
from eval_anything.judges.base import JudgeQuery, JudgeScorer, NotApplicable, Verdict, instruction_of, question_of
from eval_anything.judges.kinds import question_queries, rating_parser, require_output
from eval_anything.judges.parsers import parse_rating
from eval_anything.judges.templates import Rubric
from eval_anything.scorers.base import AnswerScorer, Attempt, Scorer, path_in_task
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
        raise UsageError(f"sample {sample.id!r}: column {column!r} must map combinations (t, ti, tia...) to vote shares")
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


SYNERGY_SCORERS = ("judge", "reward_model")
READOUTS = ("as_published", "end")
NO_REWARD_MODEL = ("protocol paper scores synergy with a multimodal reward model (the paper's "
                   "PKU-Alignment/AnyRewardModel): give one with --reward-model DIR, or run --protocol extended "
                   "for an LLM judge's rating")


class SynergyJudge(JudgeScorer):
    """How well two output modalities work together, in [0, 1], per pair (ti, ta, ia).

    `scorer: judge` (ours): an LLM judge's 1-10 rating, normalised, seeing the media it can take.
    `scorer: reward_model` (the paper's, amg/synergy/reward_eval.py): a multimodal reward model reads
    "USER: {instruction}\nASSISTANT:\n" + its placeholders for the pair's media + the pair's text,
    with the generated media through its own processor; the pair scores sigmoid of the end score for
    ia and of the mean token score for ti and ta (`readout: as_published`, the original's
    inconsistency kept) or of the end score throughout (`readout: end`). No LLM judge is asked. The
    reward model is `reward_model` (a folder, relative to the task) or the run's `--reward-model`.
    An item scores the mean over the pairs that could be made; results add each pair's mean over
    items (`synergy_ti`, `synergy_ta`, `synergy_ia`), as the original reports them."""

    default_template = "synergy_pair"

    def __init__(self, pairs: Sequence[str] = ("ti", "ta", "ia"), scorer: str = "judge",
                 reward_model: str | None = None, readout: str = "as_published", **common: Any) -> None:
        super().__init__(**common)
        if reward_model and scorer == "judge":
            scorer = "reward_model"  # naming a reward model asks for it
        if scorer not in SYNERGY_SCORERS:
            raise UsageError(f"scorer must be one of {', '.join(SYNERGY_SCORERS)}, not {scorer!r}")
        if readout not in READOUTS:
            raise UsageError(f"readout must be one of {', '.join(READOUTS)}, not {readout!r}")
        self.pairs, self.scorer, self.readout = tuple(pairs), scorer, readout
        self.reward_reference = reward_model
        self.reward: Any = None

    def bind_task(self, task_dir: Path) -> None:
        super().bind_task(task_dir)
        if self.reward_reference:
            self.reward_reference = path_in_task(self.reward_reference, task_dir)

    def bind_judging(self, settings: Any) -> None:
        if self.scorer != "reward_model" or self.reward is not None:
            return
        reference = self.reward_reference or getattr(settings, "reward_model", None)
        if reference:
            from eval_anything.judges.reward_models import RewardModel

            reward = RewardModel(reference)
            reward.check({MODALITY_OF[letter] for pair in self.pairs for letter in pair})  # before any call
            self.reward = reward

    def judge_modalities(self, inputs: frozenset[Modality] = frozenset()) -> frozenset[Modality]:
        if self.scorer == "reward_model":
            return frozenset()  # computed here: no judge model is asked
        return frozenset(MODALITY_OF[letter] for pair in self.pairs for letter in pair if letter != "t")

    def pair_query(self, pair: str, sample: Sample, attempts: Sequence[Attempt], made: _GeneratedMedia) -> JudgeQuery:
        text = made.output.text if "t" in pair else ""
        if self.scorer == "reward_model":
            return self._reward_query(pair, instruction_of(sample), text, made.media(pair))
        return _rating_query(f"synergy {pair}", self.rubric, 1, 10, made.media(pair), question=question_of(sample, attempts),
                             text=text, described=made.described(pair), first=NAMES[pair[0]], second=NAMES[pair[1]])

    def _reward_query(self, pair: str, instruction: str, text: str, media: Sequence[Part]) -> JudgeQuery:
        if self.reward is None:
            raise NotApplicable(NO_REWARD_MODEL)
        end = self.readout == "end" or pair == "ia"
        reward = self.reward

        formatted = reward.format_text(instruction, text, media)  # what the audit shows is what it reads

        from eval_anything.judges.reward_models import sigmoid

        def read() -> dict[str, float]:
            reading = reward.read_formatted(formatted, media)
            raw = reading.end_score if end else reading.token_mean
            return {"value": sigmoid(raw), "raw": raw, "readout": "end_score" if end else "token_mean"}

        return JudgeQuery(f"synergy {pair}", formatted, _not_parsed, tuple(media), local=read)

    def pair_value(self, verdict: Verdict) -> float:
        if self.scorer == "reward_model":
            return verdict.value["value"]
        return _normalized(verdict.value, 1, 10)

    def queries(self, sample: Sample, attempts: Sequence[Attempt]) -> list[JudgeQuery]:
        made = _GeneratedMedia(attempts[0].output)
        possible = [pair for pair in self.pairs if all(l == "t" or l in made.by_letter for l in pair)]
        if not possible:
            made.require("".join(self.pairs))
        return [self.pair_query(pair, sample, attempts, made) for pair in possible]

    def conclude(self, sample: Sample, attempts: Sequence[Attempt], verdicts: Sequence[Verdict]) -> Score:
        by_pair = {v.label.split()[-1]: self.pair_value(v) for v in verdicts}
        missing = [p for p in self.pairs if p not in by_pair]
        details: dict[str, Any] = {"synergy": by_pair, "scorer": self.scorer}
        if self.scorer == "reward_model":
            details["reward"] = {v.label.split()[-1]: {k: v.value[k] for k in ("raw", "readout")} for v in verdicts}
            details["reward_model"] = self.reward.describe()
        return Score(value=sum(by_pair.values()) / len(by_pair), answer=json.dumps(by_pair),
                     explanation="mean synergy over " + ", ".join(by_pair)
                     + (f"; not made: {', '.join(missing)}" if missing else ""), details=details)

    def summarize(self, scores: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Each pair's mean over the items that made it, as the original reports reward_ti/ta/ia."""
        out: dict[str, Any] = {}
        for pair in self.pairs:
            values = [s["details"]["synergy"][pair] for s in scores
                      if s["value"] is not None and pair in s.get("details", {}).get("synergy", {})]
            out[f"synergy_{pair}"] = {"value": sum(values) / len(values) if values else None, "n": len(values)}
        return out


def _not_parsed(reply: str) -> Any:
    raise AssertionError("a locally computed verdict has no reply to parse")


def amg_synergy(pairs: Sequence[str] = ("ti", "ta", "ia"), scorer: str = "judge", reward_model: str | None = None,
                readout: str = "as_published", **common: Any) -> SynergyJudge:
    """Synergy of output modality pairs, by an LLM judge (scorer: judge) or a multimodal reward model
    (scorer: reward_model, the paper's)."""
    return SynergyJudge(pairs, scorer, reward_model, readout, **common)


@dataclass(frozen=True)
class _InstructionFollowing:
    """How the composite scores one output modality's instruction following under a protocol."""

    template: str
    system: str | None
    reply: str
    low: float
    high: float
    temperature: float | None
    media_after_text: bool = False
    """The original image judge gets its text first, then the image."""


COMPOSITE_PROTOCOLS: dict[str, dict[str, Any]] = {
    "paper": {"t": _InstructionFollowing("if_text_paper_user", "if_text_paper_system", "score_and_explanation", 1, 10, 0.5),
              "i": _InstructionFollowing("if_image_paper_user", "if_image_paper_system", "score_and_explanation", 0, 10, 0.5,
                                        media_after_text=True),
              "mcq": ("media_mcq_paper", "media_mcq_paper_system", "letter_as_published"),
              "synergy": "reward_model"},
    "extended": {"t": _InstructionFollowing("instruction_following_1_10", None, "rating", 1, 10, None),
                 "i": _InstructionFollowing("image_rubric_4321", None, "rating", 0, 10, None),
                 "mcq": ("media_mcq", None, "choice"),
                 "synergy": "judge"},
}
"""What the S_AMG composite asks for each part, by protocol: the paper's instruction-following
prompts, parsers and temperature and its reward-model synergy, or ours."""


class CompositeJudge(SynergyJudge):
    """S_AMG per prompt (suite/composite.py): for the combination the answer chose, each chosen
    modality's instruction following S_i in [0, 1] (text: a 1-10 rating, (r - 1) / 9; image: the
    4/3/2/1 rubric, / 10; audio/video: the item's multiple-choice questions about the generated
    media when it has them, the fraction right, else a 1-10 rating), each pair's synergy S_ij, and α
    from the human votes. `protocol` picks the prompts and the synergy scorer (COMPOSITE_PROTOCOLS).
    Every component is kept in the per-sample log."""

    def __init__(self, votes: str = "selection", protocol: str = "extended", reward_model: str | None = None,
                 **common: Any) -> None:
        if protocol not in COMPOSITE_PROTOCOLS:
            raise UsageError(f"protocol must be one of {', '.join(COMPOSITE_PROTOCOLS)}, not {protocol!r}")
        kit = COMPOSITE_PROTOCOLS[protocol]
        super().__init__(("ti", "ta", "ia"), "reward_model" if reward_model else kit["synergy"], reward_model,
                         **common)
        self.votes, self.protocol = votes, protocol
        self.kits = {letter: kit[letter] for letter in "ti"}
        self.rubrics = {letter: (Rubric.find(k.template), Rubric.find(k.system) if k.system else None)
                        for letter, k in self.kits.items()}
        template, system, self.mcq_reply = kit["mcq"]
        self.mcq, self.mcq_system = Rubric.find(template), Rubric.find(system) if system else None
        self.if_fallback = Rubric.find("instruction_following_1_10")

    def judge_modalities(self, inputs: frozenset[Modality] = frozenset()) -> frozenset[Modality]:
        return frozenset({Modality.IMAGE, Modality.AUDIO})  # the selection combinations: text, image, audio

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
        if letter in self.kits:
            kit, (rubric, system) = self.kits[letter], self.rubrics[letter]
            text = rubric.render(question=question, instruction=instruction_of(sample), response=made.output.text)
            return [JudgeQuery(f"if {letter}", text, rating_parser(kit.reply, kit.low, kit.high),
                               tuple(made.media(letter)) if letter != "t" else (),
                               system=system.render(item=dict(sample.metadata)) if system else None,
                               temperature=kit.temperature, media_after_text=kit.media_after_text)]
        items = sample.metadata.get(f"questions_{NAMES[letter]}")
        if not items:
            return [_rating_query(f"if {letter}", self.if_fallback, 1, 10, made.media(letter), question=question,
                                  response=f"(the {NAMES[letter]} that comes with this message)")]
        modality = MODALITY_OF[letter]
        system = self.mcq_system.render(item=dict(sample.metadata), modality=modality.value) if self.mcq_system else None
        return question_queries(self.mcq, items, tuple(made.media(letter)), self.mcq_reply, modality,
                                label=f"if {letter} q", system=system)

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

    def summarize(self, scores: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {}

    def _if_value(self, letter: str, sample: Sample, verdicts: Sequence[Verdict]) -> float:
        if letter in self.kits:
            return _normalized(verdicts[0].value, self.kits[letter].low, self.kits[letter].high)
        items = sample.metadata.get(f"questions_{NAMES[letter]}")
        if not items:
            return _normalized(verdicts[0].value, 1, 10)
        from eval_anything.judges.kinds import expected_letter

        return sum(v.value == expected_letter(item) for v, item in zip(verdicts, items)) / len(items)


def amg_composite(votes: str = "selection", protocol: str = "extended", reward_model: str | None = None,
                  **common: Any) -> CompositeJudge:
    """S_AMG per prompt, with every component in the sample log."""
    return CompositeJudge(votes, protocol, reward_model, **common)
