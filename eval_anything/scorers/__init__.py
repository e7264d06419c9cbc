"""Scorers: small registered pieces that turn model outputs into scores. The rule-based ones live
here; the judges and the all-modality suite register theirs when imported (below)."""
from eval_anything.scorers.base import AnswerScorer, Attempt, Scorer, build_scorer, scorer, scorers
from eval_anything.scorers import choice as _choice, text as _text  # noqa: F401  (register built-ins)
import eval_anything.judges  # noqa: E402,F401  (registers the judge kinds)
import eval_anything.suite  # noqa: E402,F401  (registers the suite's scorers)

__all__ = ["AnswerScorer", "Attempt", "Scorer", "build_scorer", "scorer", "scorers"]
