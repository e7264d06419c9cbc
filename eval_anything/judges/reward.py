"""Reward-model scoring: a transformers sequence-classification model reads prompt and answer;
the score is sigmoid(reward), in [0, 1]."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from eval_anything.datamodel import Sample, Score
from eval_anything.judges.base import question_of
from eval_anything.scorers.base import Attempt, Scorer

DEFAULT_FORMAT = "USER: {prompt}\nASSISTANT:\n{response}"


class RewardModelScorer(Scorer):
    def __init__(self, path: str, text_format: str = DEFAULT_FORMAT, max_length: int = 1024) -> None:
        self.path, self.text_format, self.max_length = path, text_format, max_length
        self._model: Any = None
        self._tokenizer: Any = None

    def bind_task(self, task_dir: Path) -> None:
        candidate = task_dir / self.path
        if not Path(self.path).is_absolute() and candidate.exists():
            self.path = str(candidate)

    def _load(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if not (Path(self.path) / "config.json").exists():
            raise FileNotFoundError(f"reward model directory {self.path} has no config.json")
        self._tokenizer = AutoTokenizer.from_pretrained(self.path)
        self._model = AutoModelForSequenceClassification.from_pretrained(self.path).eval()
        if self._model.config.pad_token_id is None:
            self._model.config.pad_token_id = self._tokenizer.pad_token_id or self._tokenizer.eos_token_id

    def reward(self, prompt: str, response: str) -> float:
        import torch

        if self._model is None:
            self._load()
        text = self.text_format.format(prompt=prompt, response=response)
        encoded = self._tokenizer(text, return_tensors="pt", truncation=True, max_length=self.max_length)
        with torch.inference_mode():
            return float(self._model(**encoded).logits[0, 0])

    def score(self, sample: Sample, attempts: Sequence[Attempt]) -> Score:
        reward = self.reward(question_of(sample, attempts), attempts[0].output.text)
        return Score(value=1 / (1 + math.exp(-reward)), answer=f"{reward:.4f}",
                     details={"reward": reward, "reward_model": self.path})


def reward_model(path: str, text_format: str = DEFAULT_FORMAT, max_length: int = 1024) -> RewardModelScorer:
    """sigmoid(reward) from a local sequence-classification reward model (`path`, relative to the task)."""
    return RewardModelScorer(path, text_format, max_length)
