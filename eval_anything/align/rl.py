"""RLOO and GRPO through TRL, rewarded by the reward model the rm stage trained (the PPO stage's reward)."""
from __future__ import annotations

from typing import Any, Sequence

from eval_anything.errors import UsageError
from eval_anything.align.config import GRPOConfig, RLConfig, RLOOConfig
from eval_anything.align.data import load_llf_records
from eval_anything.align.precision import resolve
from eval_anything.align.train import (TrainResult, load_for_training, lora_config, model_dir, render_prompt,
                                       run_training, training_arguments)


def _trainer(config: RLConfig, algorithm: str) -> tuple[Any, Any]:
    import transformers
    import trl
    from datasets import Dataset

    config_class, trainer_class = {"rloo": (trl.RLOOConfig, trl.RLOOTrainer),
                                   "grpo": (trl.GRPOConfig, trl.GRPOTrainer)}[algorithm]
    # loaded from its folder: with beta > 0 TRL rebuilds the reference from config.name_or_path
    model, processor, inputs = load_for_training(config.model, config.video_frames, precision=resolve(config))
    records = load_llf_records(config.prompts)
    if config.limit is not None:
        records = records[: config.limit]
    rows = []
    for record in records:
        if record.media:  # TRL's generation would encode media its own way, not as evaluation does
            raise UsageError(f"{config.prompts}: record {record.id} has {record.media[0].modality}; the {algorithm} "
                             "stage takes text prompts only (align ppo trains on prompts with media)")
        prompt, _ = render_prompt(inputs, record.parts())
        rows.append({"prompt": prompt})
    reward_dir = model_dir(config.reward_model)
    reward_tokenizer = transformers.AutoTokenizer.from_pretrained(reward_dir)
    if reward_tokenizer.pad_token is None:
        reward_tokenizer.pad_token = reward_tokenizer.eos_token
    reward = transformers.AutoModelForSequenceClassification.from_pretrained(reward_dir, num_labels=1,
                                                                             dtype=resolve(config).load_dtype)
    reward.config.pad_token_id = reward_tokenizer.pad_token_id
    args = training_arguments(config_class, config, num_generations=config.num_generations,
                              max_completion_length=config.max_completion_length, beta=config.beta)
    trainer = trainer_class(model=model, reward_funcs=[reward], args=args, train_dataset=Dataset.from_list(rows),
                            processing_class=processor, reward_processing_classes=[reward_tokenizer],
                            peft_config=lora_config(config, "CAUSAL_LM"))
    return trainer, processor


def train_rl(config: RLConfig, algorithm: str, callbacks: Sequence[Any] = ()) -> TrainResult:
    if algorithm not in ("rloo", "grpo"):
        raise UsageError(f"unknown RL algorithm {algorithm!r}: rloo or grpo")
    return run_training(algorithm, config, config.prompts, lambda: _trainer(config, algorithm),
                        callbacks=callbacks, extra_inputs=[config.reward_model])


def train_rloo(config: RLOOConfig) -> TrainResult:
    return train_rl(config, "rloo")


def train_grpo(config: GRPOConfig) -> TrainResult:
    return train_rl(config, "grpo")
