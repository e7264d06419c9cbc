"""S_AMG, the all-modality generation composite of the Align-Anything paper (DESIGN.md §3.2):

    S_AMG = sum over pairs (i, j) of the chosen output modalities of  ½ · α_ij · (S_i + S_j) · S_ij

S_i is modality i's instruction-following score, S_ij the pair's synergy score, both in [0, 1];
α_ij the human vote share of the chosen combination, and when all three of text, image and
audio are output each pair gets α_ij = ⅓ · α_tia. An answer in a single modality has no pair,
so its S_AMG is 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Mapping


@dataclass(frozen=True)
class CompositePart:
    pair: str
    alpha: float
    s_i: float
    s_j: float
    s_ij: float

    @property
    def value(self) -> float:
        return 0.5 * self.alpha * (self.s_i + self.s_j) * self.s_ij


def pairs_of(chosen: str) -> list[str]:
    """The modality pairs of a combination code, e.g. "tia" -> ["ti", "ta", "ia"]."""
    return ["".join(pair) for pair in combinations(chosen, 2)]


def s_amg(chosen: str, instruction_following: Mapping[str, float], synergy: Mapping[str, float],
          votes: Mapping[str, float]) -> tuple[float, list[CompositePart]]:
    """The composite for one prompt and its parts. `chosen` is a combination code ("ti", "tia"...),
    `instruction_following` maps each chosen modality letter to S_i, `synergy` each pair to S_ij,
    `votes` each combination code to its human vote share."""
    pairs = pairs_of(chosen)
    share = float(votes.get(chosen, 0.0))
    alpha = share / len(pairs) if pairs else 0.0  # one pair: the share itself; three: a third each
    parts = [CompositePart(pair, alpha, instruction_following[pair[0]], instruction_following[pair[1]], synergy[pair])
             for pair in pairs]
    return sum(part.value for part in parts), parts
