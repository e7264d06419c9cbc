"""A scalar head on a model's last hidden states: the reward model and PPO critic for every modality.

A text reward model is a `*ForSequenceClassification` folder (TRL's RewardTrainer); a model that
takes images, audio or video has no such class for most architectures (LLaVA, Qwen2-Audio), so,
as align-anything's text_image_to_text / text_audio_to_text reward models do, it is the
generative model plus a linear score head, saved in the harness's `score head` reward-model
layout (eval_anything/judges/reward_models.py): the model folder and `score_head.safetensors`.
Either kind loads here as a ScoreModel, whose score of token t is head(h_t); the reward of a
prompt + response is the score at its last token. RewardScorer and MediaRewardScorer score batches
of rollouts with the two kinds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from eval_anything.errors import UsageError
from eval_anything.judges.reward_models import SCORE_HEAD_FILE, save_score_head


def is_score_head_model(path: Path | str) -> bool:
    return (Path(path) / SCORE_HEAD_FILE).exists()


def _module() -> type:
    import torch

    class ScoreModel(torch.nn.Module):
        """`trunk` gives hidden states (a base model's last_hidden_state, or a generative model's
        hidden_states[-1]); `head` maps each to one score."""

        def __init__(self, trunk: Any, head: Any) -> None:
            super().__init__()
            self.trunk, self.head = trunk, head

        def token_scores(self, input_ids: Any, attention_mask: Any, **media: Any) -> Any:
            positions = (attention_mask.cumsum(1) - 1).clamp(min=0)
            out = self.trunk(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                             **media, **({} if _is_base(self.trunk) else {"output_hidden_states": True}))
            hidden = out.last_hidden_state if _is_base(self.trunk) else out.hidden_states[-1]
            return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1).float()

        def forward(self, input_ids: Any, attention_mask: Any, **media: Any) -> Any:
            """The score at each row's last attended token (right padding)."""
            import torch

            scores = self.token_scores(input_ids, attention_mask, **media)
            last = (attention_mask.sum(1) - 1).clamp(min=0).long()
            return scores[torch.arange(len(last), device=scores.device), last]

        def save(self, folder: Path) -> None:
            self.trunk.save_pretrained(folder)
            save_score_head(folder, self.head.weight.detach().float().cpu(),
                            None if self.head.bias is None else self.head.bias.detach().float().cpu())

    return ScoreModel


def _is_base(trunk: Any) -> bool:
    """A base model (LlamaModel...) rather than a model with a language-modelling head."""
    return getattr(trunk, "get_output_embeddings", lambda: None)() is None


def new_score_model(generative: Any) -> Any:
    """A ScoreModel on a generative model, its head initialised small (align-anything's score head init)."""
    import torch

    hidden = generative.config.get_text_config().hidden_size
    head = torch.nn.Linear(hidden, 1).to(next(generative.parameters()).device)
    torch.nn.init.normal_(head.weight, std=1.0 / (hidden + 1) ** 0.5)
    torch.nn.init.zeros_(head.bias)
    return _module()(generative, head)


def from_sequence_classifier(model: Any) -> Any:
    """A ScoreModel sharing a `*ForSequenceClassification` model's trunk and head."""
    for name in ("score", "classifier", "v_head"):
        head = getattr(model, name, None)
        if head is not None:
            return _module()(model.base_model, head)
    raise UsageError(f"the reward model ({type(model).__name__}) has no score/classifier head to start from")


def load_score_model(path: Path | str, dtype: Any, video_frames: int = 8) -> Any:
    """The reward model at `path` (either layout) as a ScoreModel, in `dtype`."""
    import torch
    import transformers
    from safetensors.torch import load_file

    from eval_anything.models.hf import load_generative_model
    from eval_anything.models.inputs import input_modalities_of, load_processor

    path = Path(path)
    if not is_score_head_model(path):
        model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
        return from_sequence_classifier(model)
    processor = load_processor(transformers, path)
    generative = load_generative_model(transformers, path, dtype, {}, input_modalities_of(processor))
    tensors = load_file(path / SCORE_HEAD_FILE)
    head = torch.nn.Linear(tensors["weight"].shape[1], 1, bias="bias" in tensors)
    with torch.no_grad():
        head.weight.copy_(tensors["weight"])
        if "bias" in tensors:
            head.bias.copy_(tensors["bias"])
    return _module()(generative, head.to(dtype))


class RewardScorer:
    """Scores prompt + response texts with a sequence-classification reward model."""

    def __init__(self, path: Path, device: Any, dtype: Any = None) -> None:
        import torch
        import transformers

        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = transformers.AutoModelForSequenceClassification.from_pretrained(
            path, dtype=dtype or torch.float32).to(device).eval()
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.device = device

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> Any:
        import torch

        eos = self.tokenizer.eos_token or ""
        texts = [p + r + (eos if not r.endswith(eos) else "") for p, r in zip(prompts, responses)]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, padding_side="right",
                               add_special_tokens=False).to(self.device)
        with torch.no_grad():
            return self.model(**batch).logits[:, 0].float()


class MediaRewardScorer:
    """Scores prompt + response with a score-head reward model, the prompt's media encoded by its
    processor as evaluation encodes them."""

    def __init__(self, path: Path, device: Any, dtype: Any, video_frames: int) -> None:
        import transformers

        from eval_anything.models.inputs import InputProcessor, load_processor

        self.inputs = InputProcessor(load_processor(transformers, path), video_frames, str(path))
        self.model = load_score_model(path, dtype).to(device).eval()
        self.device = device

    def __call__(self, prompts: Sequence[Any], responses: Sequence[str]) -> Any:
        """`prompts` have .text (rendered) and .media (parts)."""
        import torch

        eos = self.inputs.tokenizer.eos_token or ""
        texts = [p.text + r + (eos if not r.endswith(eos) else "") for p, r in zip(prompts, responses)]
        batch = self.inputs.encode(texts, [self.inputs.prepare(p.media) for p in prompts], padding_side="right")
        with torch.no_grad():
            return self.model(**batch.to(self.device)).float()
