"""Model-judge metrics: rubric templates + strict parsers, run through any model backend with a
persistent cache, bounded concurrency, bounded re-asking and full accounting."""
from eval_anything.judges.base import JudgeQuery, JudgeScorer, Verdict
from eval_anything.judges.parsers import JudgeParseError

__all__ = ["JudgeParseError", "JudgeQuery", "JudgeScorer", "Verdict"]
