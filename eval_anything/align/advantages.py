"""The arithmetic of policy-gradient training on token sequences: masked means, GAE, group advantages
(GRPO, RLOO), the response mask and running reward moments. Pure torch; used by ppo.py."""
from __future__ import annotations

import math
from typing import Any, Sequence


def masked_mean(values: Any, mask: Any) -> Any:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(values: Any, mask: Any, eps: float = 1e-8) -> Any:
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    return ((values - mean) * (var + eps).rsqrt()) * mask


def gae(rewards: Any, values: Any, mask: Any, gamma: float, lam: float) -> tuple[Any, Any]:
    """Generalised advantage estimation over response tokens; (advantages, returns)."""
    import torch

    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    length = rewards.shape[1]
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    returns = advantages + values
    return advantages * mask, returns


def response_mask(responses: Any, eos_ids: set[int]) -> Any:
    """1 up to and including the first EOS of each row, 0 after."""
    import torch

    is_end = torch.zeros_like(responses, dtype=torch.bool)
    for eos in eos_ids:
        is_end |= responses == eos
    ended_before = torch.cumsum(is_end.int(), dim=1) - is_end.int()
    return (ended_before == 0).float()


def group_advantages(scores: Any, group: int, estimator: str) -> Any:
    """One advantage per response from the scores of the `group` consecutive responses to each prompt:
    grpo (s - mean) / (std + 1e-4), as TRL's GRPO; rloo s - mean of the other responses' scores."""
    grouped = scores.reshape(-1, group)
    if estimator == "grpo":
        advantages = (grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)
    else:
        advantages = grouped - (grouped.sum(1, keepdim=True) - grouped) / (group - 1)
    return advantages.reshape(-1)


class RunningMoments:
    """Mean and variance of every score seen so far (Chan et al.'s parallel update), for normalise_reward."""

    def __init__(self) -> None:
        self.count, self.mean, self.var = 0, 0.0, 1.0

    def update(self, values: Sequence[float]) -> None:
        n = len(values)
        if not n:
            return
        mean = sum(values) / n
        var = sum((v - mean) ** 2 for v in values) / n
        total = self.count + n
        delta = mean - self.mean
        self.var = (self.var * self.count + var * n + delta ** 2 * self.count * n / total) / total
        self.mean += delta * n / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0)) or 1.0

    def to_json(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "var": self.var}

    def load(self, data: dict[str, float]) -> None:
        self.count, self.mean, self.var = int(data["count"]), float(data["mean"]), float(data["var"])
