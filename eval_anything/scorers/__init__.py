"""Scorers: small registered pieces that turn model outputs into scores."""
from eval_anything.scorers.base import AnswerScorer, Attempt, Scorer, build_scorer, scorer, scorers
from eval_anything.scorers import choice as _choice, text as _text  # noqa: F401  (register built-ins)

__all__ = ["AnswerScorer", "Attempt", "Scorer", "build_scorer", "scorer", "scorers"]
