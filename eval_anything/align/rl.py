"""RLOO and GRPO rewarded by the reward model the rm stage trained (the PPO stage's reward): through
TRL's trainers for text prompts; through our trainer (align/ppo.py, advantage_estimator rloo or grpo,
the same algorithm) when the prompts carry images, audio or video. TRL 1.16's RLOO and GRPO take
images only, encode them their own way rather than as evaluation does, and score with a text-only
reward model; ours encodes every modality through the hf backend's InputProcessor and scores with
the media reward model the rm stage trains (docs/align.md lists the remaining differences)."""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from eval_anything.align.config import GRPOConfig, PPOConfig, RLConfig, RLOOConfig, TrainConfig
from eval_anything.align.data import load_llf_records
from eval_anything.align.precision import resolve
from eval_anything.align.train import (TrainResult, load_stage_model, lora_config, model_dir, reference_loading,
                                       render_prompt, run_training, training_arguments)
from eval_anything.errors import UsageError


def _trainer(config: RLConfig, algorithm: str) -> tuple[Any, Any]:
    import transformers
    import trl
    from datasets import Dataset

    config_class, trainer_class = {"rloo": (trl.RLOOConfig, trl.RLOOTrainer),
                                   "grpo": (trl.GRPOConfig, trl.GRPOTrainer)}[algorithm]
    # loaded from its folder: with beta > 0 TRL rebuilds the reference from config.name_or_path
    model, processor, inputs = load_stage_model(config)
    rows = [{"prompt": render_prompt(inputs, record.parts())[0]} for record in _records(config)]
    reward_dir = model_dir(config.reward_model)
    reward_tokenizer = transformers.AutoTokenizer.from_pretrained(reward_dir)
    if reward_tokenizer.pad_token is None:
        reward_tokenizer.pad_token = reward_tokenizer.eos_token
    reward = transformers.AutoModelForSequenceClassification.from_pretrained(reward_dir, num_labels=1,
                                                                             dtype=resolve(config).frozen_dtype)
    reward.config.pad_token_id = reward_tokenizer.pad_token_id
    args = training_arguments(config_class, config, num_generations=config.num_generations,
                              max_completion_length=config.max_completion_length, beta=config.beta,
                              **(reference_loading(config) if config.beta else {}))
    trainer = trainer_class(model=model, reward_funcs=[reward], args=args, train_dataset=Dataset.from_list(rows),
                            processing_class=processor, reward_processing_classes=[reward_tokenizer],
                            peft_config=lora_config(config, "CAUSAL_LM"))
    return trainer, processor


def _records(config: RLConfig) -> list[Any]:
    records = load_llf_records(config.prompts)
    return records if config.limit is None else records[: config.limit]


def group_ppo_config(config: RLConfig, algorithm: str) -> PPOConfig:
    """The PPOConfig that runs TRL's `algorithm` with `config`'s settings in our trainer: one optimiser
    step per iteration on batch_size x gradient_accumulation_steps completions (TRL's generation batch,
    steps_per_generation = gradient_accumulation_steps), one pass over each rollout (num_iterations 1),
    TRL's defaults for what RLConfig does not set (linear schedule without warm-up, clip 0.2, gradient
    norm 1, temperature 1, no reward clipping)."""
    completions = config.batch_size * config.gradient_accumulation_steps
    if completions % config.num_generations:
        raise UsageError(f"{algorithm}: batch_size x gradient_accumulation_steps ({completions}) must be a multiple "
                         f"of num_generations ({config.num_generations}) for prompts with media (the "
                         "responses to one prompt are compared on one process)")
    shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig) if f.init}
    in_loop = {f.name: getattr(config, f.name) for f in dataclasses.fields(RLConfig)
               if f.name.startswith("eval_")}
    ppo = PPOConfig(**{**shared, **in_loop, **dict(
        reward_model=config.reward_model, prompts=config.prompts, batch_size=completions // config.num_generations,
        num_generations=config.num_generations, advantage_estimator=algorithm,
        response_length=config.max_completion_length, kl_coef=config.beta, ppo_epochs=1, mini_batches=1,
        temperature=1.0, clip_range=0.2, max_grad_norm=1.0, lr_scheduler_type="linear", warmup_ratio=0.0,
        reward_clip=None)})
    ppo.validate()
    return ppo


def train_rl(config: RLConfig, algorithm: str, callbacks: Sequence[Any] = ()) -> TrainResult:
    """`callbacks`: trainer callbacks; for prompts with media, only in-loop evaluators (EvalAnythingCallback)."""
    if algorithm not in ("rloo", "grpo"):
        raise UsageError(f"unknown RL algorithm {algorithm!r}: rloo or grpo")
    if any(record.media for record in _records(config)):
        from eval_anything.align.callback import EvalAnythingCallback
        from eval_anything.align.ppo import train_ppo

        others = [c for c in callbacks if not isinstance(c, EvalAnythingCallback)]
        if others:
            raise UsageError(f"{algorithm}: prompts with media train in eval_anything's trainer, which takes no "
                             f"transformers callbacks ({type(others[0]).__name__}); use eval_every for evaluation")
        return train_ppo(group_ppo_config(config, algorithm), evaluators=callbacks, stage=algorithm,
                         stage_config=config)
    return run_training(algorithm, config, config.prompts, lambda: _trainer(config, algorithm),
                        callbacks=callbacks, extra_inputs=[config.reward_model])


def train_rloo(config: RLOOConfig, callbacks: Sequence[Any] = ()) -> TrainResult:
    return train_rl(config, "rloo", callbacks)


def train_grpo(config: GRPOConfig, callbacks: Sequence[Any] = ()) -> TrainResult:
    return train_rl(config, "grpo", callbacks)
