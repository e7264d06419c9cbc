"""Scorers: small registered pieces that turn model outputs into scores."""
from eval_anything.scorers.base import AnswerScorer, Attempt, Scorer, build_scorer, scorer, scorers
from eval_anything.scorers import choice as _choice, text as _text  # noqa: F401  (register built-ins)

scorers.register("judge_rating", "eval_anything.judges.kinds:judge_rating")
scorers.register("judge_pairwise", "eval_anything.judges.kinds:judge_pairwise")
scorers.register("judge_media_mcq", "eval_anything.judges.kinds:judge_media_mcq")
scorers.register("reward_model", "eval_anything.judges.reward:reward_model")
scorers.register("objective_answer", "eval_anything.suite.scorers:objective_answer")
scorers.register("modality_selection", "eval_anything.suite.scorers:modality_selection")
scorers.register("amg_synergy", "eval_anything.suite.scorers:amg_synergy")
scorers.register("amg_composite", "eval_anything.suite.scorers:amg_composite")

__all__ = ["AnswerScorer", "Attempt", "Scorer", "build_scorer", "scorer", "scorers"]
