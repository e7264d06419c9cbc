"""Suite-level scores made of task scores: AMU is the mean of its four dimensions. Registered when
the suite loads (its package imports this module), which every suite task's scorers make it do."""
from __future__ import annotations

from eval_anything.composites import Composite, composites

AMU = Composite(("amu_perception", "amu_reasoning", "amu_instruction_following", "amu_safety"), "judge_rating")
composites.register("amu", AMU)
