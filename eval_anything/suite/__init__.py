"""The all-modality suite of the Align-Anything paper: AMU (understanding) and AMG (generation:
instruction following, modality selection, modality synergy and the S_AMG composite)."""
from eval_anything.suite import groups as _groups  # noqa: F401  (registers the suite's composite scores)
