"""Model-judge metrics: rubric templates + strict parsers, run through any model backend with a
persistent cache, bounded concurrency, bounded re-asking and full accounting. The judge kinds are
registered here as scorers (imported when first built)."""
from eval_anything.judges.base import JudgeQuery, JudgeScorer, Verdict
from eval_anything.judges.parsers import JudgeParseError
from eval_anything.scorers.base import scorers

scorers.register("judge_rating", "eval_anything.judges.kinds:judge_rating")
scorers.register("judge_pairwise", "eval_anything.judges.kinds:judge_pairwise")
scorers.register("judge_media_mcq", "eval_anything.judges.kinds:judge_media_mcq")
scorers.register("reward_model", "eval_anything.judges.reward:reward_model")

__all__ = ["JudgeParseError", "JudgeQuery", "JudgeScorer", "Verdict"]
