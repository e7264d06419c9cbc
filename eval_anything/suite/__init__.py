"""The all-modality suite of the Align-Anything paper: AMU (understanding) and AMG (generation:
instruction following, modality selection, modality synergy and the S_AMG composite)."""
from eval_anything.suite import groups as _groups  # noqa: F401  (registers the suite's composite scores)
from eval_anything.scorers.base import scorers

scorers.register("objective_answer", "eval_anything.suite.scorers:objective_answer")
scorers.register("modality_selection", "eval_anything.suite.scorers:modality_selection")
scorers.register("amg_synergy", "eval_anything.suite.scorers:amg_synergy")
scorers.register("amg_composite", "eval_anything.suite.scorers:amg_composite")
