"""Reward-model scoring: a local reward model reads prompt and answer; the score is
sigmoid(reward), in [0, 1]. The reward is the model's end score (see reward_models.RewardModel:
a transformers sequence-classification model, or any model folder with a score head file)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from eval_anything.datamodel import Sample, Score
from eval_anything.judges.base import question_of
from eval_anything.judges.reward_models import (HEAD_SCORE, HEAD_SEQUENCE_CLASSIFICATION, SCORE_HEAD_FILE,
                                                RewardModel, RewardReading, reward_text, save_score_head, sigmoid)
from eval_anything.scorers.base import Attempt, Scorer, path_in_task

__all__ = ["DEFAULT_FORMAT", "HEAD_SCORE", "HEAD_SEQUENCE_CLASSIFICATION", "SCORE_HEAD_FILE", "RewardModel",
           "RewardModelScorer", "RewardReading", "reward_model", "reward_text", "save_score_head"]

DEFAULT_FORMAT = "USER: {prompt}\nASSISTANT:\n{response}"


class RewardModelScorer(Scorer):
    def __init__(self, path: str, text_format: str = DEFAULT_FORMAT, max_length: int = 1024) -> None:
        self.path, self.text_format, self.max_length = path, text_format, max_length
        self._reader: RewardModel | None = None

    def bind_task(self, task_dir: Path) -> None:
        bound = path_in_task(self.path, task_dir)
        if bound != self.path:
            self.path, self._reader = bound, None

    @property
    def reader(self) -> RewardModel:
        """The reward model (its folder is checked on first use, after bind_task; weights load lazily)."""
        if self._reader is None:
            self._reader = RewardModel(self.path, max_length=self.max_length)
        return self._reader

    def reward(self, prompt: str, response: str) -> float:
        """The end score of the text `text_format` makes (text only, truncated at max_length)."""
        return self.reader.read_formatted(self.text_format.format(prompt=prompt, response=response)).end_score

    def score(self, sample: Sample, attempts: Sequence[Attempt]) -> Score:
        reward = self.reward(question_of(sample, attempts), attempts[0].output.text)
        return Score(value=sigmoid(reward), answer=f"{reward:.4f}",
                     details={"reward": reward, "reward_model": self.path})


def reward_model(path: str, text_format: str = DEFAULT_FORMAT, max_length: int = 1024) -> RewardModelScorer:
    """sigmoid(reward) from a local reward model (`path`, relative to the task): a
    sequence-classification model, or a model folder with score_head.safetensors."""
    return RewardModelScorer(path, text_format, max_length)
