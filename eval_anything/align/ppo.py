"""PPO for language models on accelerate, against a trained reward model.

TRL removed its PPO trainer after 1.12 (see ../shared/NOTES-training-stack.md), so this is ours,
following align-anything's trainers/text_to_text/ppo.py. One iteration:

1. Rollout: each process takes its own shard of the iteration's prompts (disjoint across
   processes) and samples a response per prompt (temperature T, its own seed); the response ends
   at its first EOS (later tokens are masked out).
2. Score: the reward model scores prompt + response (as the rm stage trained it). Optionally the
   score is normalised by the running mean/std of all scores so far, clipped to +-reward_clip,
   and lowered by missing_eos_penalty when the response has no EOS (it was cut off).
3. Per-token reward: -kl_coef * (log pi(a|s) - log pi_ref(a|s)) on every response token, plus
   the score on the last one (the KL penalty keeps the policy near the reference).
4. GAE: delta_t = r_t + gamma V(s_{t+1}) - V(s_t); A_t = sum_k (gamma lam)^k delta_{t+k};
   returns = A + V; advantages whitened over the valid tokens of all processes.
5. `ppo_epochs` passes of minibatch updates on
   L = E[max(-A r, -A clip(r, 1-eps, 1+eps))] + vf_coef * 0.5 E[max((V-R)^2, (V_clip-R)^2)]
       (+ ptx_coef * the language-modelling loss of a supervised batch, with ptx_data),
   r = exp(log pi - log pi_old), V_clip = V_old + clip(V - V_old, -eps_v, eps_v). Each minibatch
   is gradient_accumulation_steps micro-batches; the gradient is clipped to max_grad_norm; the
   learning rate follows a warm-up + decay schedule (transformers.get_scheduler).

Token means are taken over the tokens of all processes (each process divides by the global
count / world size, and DDP averages), so N processes on batch B each take the same optimizer
step as one process on N x B.

`advantage_estimator: grpo | rloo` replaces steps 3-4 (and the critic) with one advantage per
response from the `num_generations` responses to its prompt: GRPO (s - mean) / std with a k3 KL
term in the loss, RLOO s - (mean of the others) with the KL subtracted from s. Prompts may carry
images, audio or video: they are encoded by the hf backend's InputProcessor for every model.

The value function is a separate critic initialised from the reward model (its trunk, with the
scalar head applied to every position), as align-anything does; `shared_trunk` puts a linear head
on the policy's last hidden state instead. Positions are computed from the attention mask, so
left padding does not shift them. Checkpoints (accelerate state: models, optimizer, scheduler,
each process's RNG; plus the iteration, running reward moments and history) are written every
`save_steps` iterations and resumed from after a crash.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from eval_anything.align.advantages import RunningMoments, gae, group_advantages, masked_mean, response_mask
from eval_anything.align.artifacts import Artifact, fingerprint
from eval_anything.align.config import PPOConfig
from eval_anything.align.data import load_llf_records
from eval_anything.align.metrics import MetricsFile, resolve_report_to
from eval_anything.align.precision import Precision, cast_trained, enable_checkpointing, resolve
from eval_anything.align.score_model import MediaRewardScorer, RewardScorer, is_score_head_model, load_score_model
from eval_anything.align.train import (CHECKPOINTS_DIR, MODEL_DIR, TrainResult, lineage, load_for_training, model_dir,
                                       render_prompt)
from eval_anything.datamodel import Part
from eval_anything.errors import UsageError
from eval_anything.manifest import LINEAGE_FILE
from eval_anything.rundir import write_json_atomic

log = logging.getLogger("eval_anything.align")
STATE_FILE = "ppo_state.json"


def _logprobs(logits: Any, tokens: Any, temperature: float) -> Any:
    import torch

    return torch.log_softmax(logits / temperature, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def _entropy(logits: Any, temperature: float) -> Any:
    import torch

    logp = torch.log_softmax(logits / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def _positions(mask: Any) -> Any:
    return (mask.cumsum(1) - 1).clamp(min=0)


def disable_dropout(model: Any) -> None:
    """Dropout off, so old and new log-probabilities come from the same function while the model
    stays in training mode (gradient checkpointing only acts in training mode)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def _actor_critic(policy: Any, critic: Any | None, value: bool = True) -> Any:
    import torch

    class ActorCritic(torch.nn.Module):
        """The policy and its value function: a separate critic (a ScoreModel started from the reward
        model) or, when `critic` is None, a linear head on the policy's last hidden state; no value
        function (zeros) when `value` is False (grpo, rloo)."""

        def __init__(self) -> None:
            super().__init__()
            self.policy, self.critic, self.value = policy, critic, value
            if critic is None and value:
                hidden = policy.config.get_text_config().hidden_size
                self.value_head = torch.nn.Linear(hidden, 1)
                torch.nn.init.normal_(self.value_head.weight, std=1.0 / (hidden + 1) ** 0.5)
                torch.nn.init.zeros_(self.value_head.bias)

        def forward(self, input_ids: Any, attention_mask: Any, **media: Any) -> tuple[Any, Any]:
            shared = self.critic is None and self.value
            out = self.policy(input_ids=input_ids, attention_mask=attention_mask,
                              position_ids=_positions(attention_mask), output_hidden_states=shared, **media)
            if not self.value:
                return out.logits, torch.zeros(input_ids.shape, device=out.logits.device)
            if self.critic is not None:
                return out.logits, self.critic.token_scores(input_ids, attention_mask, **media)
            hidden = out.hidden_states[-1]
            return out.logits, self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1).float()

    return ActorCritic()


@dataclass(frozen=True)
class PPOPrompt:
    """A rendered prompt and the media given with it (images, audio, video parts)."""

    text: str
    media: tuple[Part, ...] = ()


def _rows(media: dict[str, Any], idx: Any, n: int) -> dict[str, Any]:
    """The media features of rows `idx`. All rows in order: the features as they are (any number of images,
    clips or video frames per prompt); a subset needs one feature row per prompt (one image or audio clip)."""
    import torch

    if len(idx) == n and torch.equal(idx.cpu(), torch.arange(n)):
        return media
    out = {}
    for key, value in media.items():
        if getattr(value, "shape", None) is None or value.shape[0] != n:
            raise UsageError(f"ppo: the media feature {key!r} does not have one row per prompt: with several "
                             "images, clips or video frames per prompt use mini_batches 1 and "
                             "gradient_accumulation_steps 1")
        out[key] = value[idx]
    return out


@dataclass
class Samples:
    """One process's sampled responses to its prompts."""

    prompts: list[str]
    query: Any
    query_mask: Any
    responses: Any
    mask: Any
    truncated: Any
    """True where the response has no EOS within response_length."""
    media: dict[str, Any] = field(default_factory=dict)
    """The processor's media features (pixel_values, input_features...), one row per prompt."""
    parts: list[tuple[Part, ...]] = field(default_factory=list)


@dataclass
class Rollout:
    query: Any
    query_mask: Any
    responses: Any
    mask: Any
    logprobs: Any
    values: Any
    scores: Any
    kl: Any
    truncated: Any = None
    raw_scores: Any = None
    media: dict[str, Any] = field(default_factory=dict)


def _load_critic(config: PPOConfig, precision: Precision) -> Any:
    """The value model, from the reward model; with critic_lora its trunk is a frozen base."""
    critic = load_score_model(model_dir(config.reward_model), precision.load_dtype(frozen=config.critic_lora))
    if config.critic_lora:
        from peft import LoraConfig, get_peft_model

        critic.trunk = get_peft_model(critic.trunk, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                                               target_modules=list(config.lora_targets)))
    return critic


class PPOTrainer:
    """Holds the policy + critic, frozen reference, reward scorer, optimizer, schedule and accelerator."""

    def __init__(self, config: PPOConfig, prompts: Sequence[str | PPOPrompt]) -> None:
        from accelerate.utils import set_seed

        self.config = config
        self.precision = resolve(config)
        report_to = resolve_report_to(config.report_to)
        self.accelerator = _accelerator(config, self.precision, report_to)
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.deepspeed = self.accelerator.state.deepspeed_plugin is not None
        self.zero3 = self.deepspeed and self.accelerator.state.deepspeed_plugin.zero_stage == 3
        if self.deepspeed:
            self._fill_deepspeed_config()
        set_seed(config.seed)  # the same initial weights on every process
        with self._unsharded_loading():
            model, optimizer = self._models()
        self.scheduler = _schedule(config, optimizer)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        # not prepared: accelerate would step it once per process per optimizer step
        self.accelerator.register_for_checkpointing(self.scheduler)
        reward_dir, device, dtype = model_dir(config.reward_model), self.accelerator.device, self.precision.frozen_dtype
        with self._unsharded_loading():
            self.scorer = (MediaRewardScorer(reward_dir, device, dtype, config.video_frames)
                           if is_score_head_model(reward_dir) else RewardScorer(reward_dir, device, dtype))
        self.prompts = list(prompts)
        self.ptx = self._ptx_examples()
        self.moments = RunningMoments()
        self.history: list[dict[str, float]] = []
        self.iteration = 0
        self._updates = 0
        set_seed(config.seed + self.rank)  # each process samples its own responses
        if report_to != "none":
            self.accelerator.init_trackers("ppo", config={k: str(v) for k, v in config.to_dict().items()})

    def _models(self) -> tuple[Any, Any]:
        """The policy + value function, the frozen reference (self.reference; None with LoRA) and an AdamW
        with the policy's and the critic's learning rates."""
        import torch

        config = self.config
        policy, self.processor, self.inputs = load_for_training(config.model, config.video_frames,
                                                                precision=self.precision, frozen=config.lora)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.eos_ids = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} - {None}
        gen_eos = policy.generation_config.eos_token_id
        self.eos_ids |= set(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos] if gen_eos is not None else [])
        policy.config.use_cache = False
        self.reference = None
        if not config.lora:
            self.reference = copy.deepcopy(policy).to(self.accelerator.device, self.precision.frozen_dtype)
            self.reference.eval().requires_grad_(False)
        policy = self._adapt(policy)
        with_critic = config.advantage_estimator == "gae"
        critic = None if config.shared_trunk or not with_critic else _load_critic(config, self.precision)
        for trainable in (policy, critic.trunk if critic is not None else None):
            if trainable is not None:
                disable_dropout(trainable)
                if self.precision.gradient_checkpointing:
                    enable_checkpointing(trainable)
        model = _actor_critic(policy, critic, value=with_critic)
        cast_trained(model, self.precision)
        policy_params = [p for p in model.policy.parameters() if p.requires_grad]
        critic_params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("policy.")]
        groups = [{"params": policy_params, "lr": config.learning_rate},
                  {"params": critic_params, "lr": config.critic_learning_rate or config.learning_rate}]
        return model, torch.optim.AdamW([g for g in groups if g["params"]], eps=1e-5)

    @contextlib.contextmanager
    def _unsharded_loading(self) -> Iterator[Any]:
        """Under ZeRO-3, models load whole (transformers would otherwise build them inside zero.Init): the
        policy and critic are partitioned when prepared, while the frozen reference and reward model stay
        whole outside DeepSpeed, so they need no engine and no collective calls."""
        if not self.zero3:
            yield
            return
        from transformers.integrations import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
        try:
            yield
        finally:
            self.accelerator.state.deepspeed_plugin.set_deepspeed_weakref()

    def _fill_deepspeed_config(self) -> None:
        """The DeepSpeed config's `auto` batch, accumulation and clipping values, from this config (no
        dataloader for accelerate to read them from)."""
        c = self.config
        plugin = self.accelerator.state.deepspeed_plugin
        micro = c.batch_size * c.num_generations // (c.mini_batches * c.gradient_accumulation_steps)
        ds = plugin.deepspeed_config
        ds.update(train_micro_batch_size_per_gpu=micro, gradient_accumulation_steps=c.gradient_accumulation_steps,
                  train_batch_size=micro * c.gradient_accumulation_steps * self.world,
                  gradient_clipping=c.max_grad_norm if c.max_grad_norm is not None else 0.0)
        plugin.gradient_accumulation_steps = c.gradient_accumulation_steps

    def _adapt(self, policy: Any) -> Any:
        if not self.config.lora:
            return policy
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        if self.precision.quantization != "none":
            policy = prepare_model_for_kbit_training(policy, self.precision.gradient_checkpointing)
        return get_peft_model(policy, LoraConfig(r=self.config.lora_r, lora_alpha=self.config.lora_alpha,
                                                 target_modules=list(self.config.lora_targets), task_type="CAUSAL_LM"))

    def _ptx_examples(self) -> list[str]:
        if not self.config.ptx_data:
            return []
        eos = self.tokenizer.eos_token or ""
        records = [r for r in load_llf_records(self.config.ptx_data) if r.response]
        if any(r.media for r in records):
            raise UsageError(f"ppo: ptx_data {self.config.ptx_data} has records with media; PTX takes text records")
        texts = [render_prompt(self.inputs, r.parts())[0] + r.response + eos for r in records]
        if not texts:
            raise UsageError(f"ppo: ptx_data {self.config.ptx_data} has no records with a response")
        return texts

    # -- distributed means ---------------------------------------------------------------------
    def _global_sum(self, value: Any) -> Any:
        total = value.detach().float().sum()
        return self.accelerator.reduce(total, reduction="sum") if self.world > 1 else total

    def _global_mean(self, values: Any, mask: Any) -> Any:
        return self._global_sum(values * mask) / self._global_sum(mask).clamp(min=1)

    def _whiten(self, values: Any, mask: Any) -> Any:
        mean = self._global_mean(values, mask)
        var = self._global_mean((values - mean) ** 2, mask)
        return ((values - mean) * (var + 1e-8).rsqrt()) * mask

    def _gather(self, values: Any) -> Any:
        return self.accelerator.gather(values) if self.world > 1 else values

    # -- rollout -------------------------------------------------------------------------------
    def unwrapped_policy(self) -> Any:
        return self.accelerator.unwrap_model(self.model).policy

    @contextlib.contextmanager
    def whole_policy(self) -> Iterator[Any]:
        """The unwrapped policy with all its weights on this process. Under ZeRO-3 every process must enter:
        the shards are gathered for the block and DeepSpeed's per-layer gather hooks are off meanwhile, so
        sampling makes no collective calls and the processes may generate different lengths (TRL's
        unwrap_model_for_generation)."""
        if not self.zero3:
            yield self.unwrapped_policy()
            return
        import deepspeed
        from trl.models.utils import add_hooks, remove_hooks

        with deepspeed.zero.GatheredParameters(list(self.model.parameters())):
            remove_hooks(self.model)
            try:
                yield self.unwrapped_policy()
            finally:
                add_hooks(self.model)

    def _forward(self, model: Any, ids: Any, mask: Any, query_length: int, media: dict[str, Any]) -> tuple[Any, Any]:
        logits, values = model(ids, mask, **media)
        return logits[:, query_length - 1 : -1].float(), values[:, query_length - 1 : -1]

    def _encode(self, prompts: Sequence[PPOPrompt]) -> Any:
        if not any(p.media for p in prompts):
            return self.tokenizer([p.text for p in prompts], return_tensors="pt", padding=True, padding_side="left",
                                  add_special_tokens=False)
        return self.inputs.encode([p.text for p in prompts], [self.inputs.prepare(p.media) for p in prompts],
                                  padding_side="left")

    def generate(self, prompts: Sequence[str | PPOPrompt]) -> Samples:
        import torch

        # the num_generations responses to one prompt are consecutive rows (group_advantages reads them so)
        prompts = [p if isinstance(p, PPOPrompt) else PPOPrompt(p) for p in prompts
                   for _ in range(self.config.num_generations)]
        batch = dict(self._encode(prompts).to(self.accelerator.device))
        query, query_mask = batch.pop("input_ids"), batch.pop("attention_mask")
        with self.whole_policy() as policy, torch.no_grad(), self.accelerator.autocast():
            policy.eval()
            generated = policy.generate(input_ids=query, attention_mask=query_mask, **batch, do_sample=True,
                                        temperature=self.config.temperature, top_k=0, top_p=1.0,
                                        max_new_tokens=self.config.response_length, use_cache=True,
                                        min_new_tokens=1, pad_token_id=self.tokenizer.pad_token_id,
                                        eos_token_id=sorted(self.eos_ids))
        responses = generated[:, query.shape[1]:]
        mask = response_mask(responses, self.eos_ids)
        ended = torch.zeros(len(responses), dtype=torch.bool, device=responses.device)
        for eos in self.eos_ids:
            ended |= (responses == eos).any(dim=1)
        return Samples([p.text for p in prompts], query, query_mask, responses, mask, ~ended, batch,
                       [p.media for p in prompts])

    def _reference_logits(self, ids: Any, mask: Any, media: dict[str, Any]) -> Any:
        model = self.reference
        if model is None:  # LoRA: the reference is the base without the adapter
            with self.unwrapped_policy().disable_adapter():
                return self.unwrapped_policy()(input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                                               **media).logits
        return model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), **media).logits

    def evaluate(self, samples: Samples) -> Rollout:
        """Old log-probabilities, values, reference KL and (shaped) scores of the sampled responses."""
        import torch

        c, s = self.config, samples
        self.model.eval()
        with torch.no_grad(), self.accelerator.autocast():
            ids = torch.cat([s.query, s.responses], dim=1)
            full_mask = torch.cat([s.query_mask, s.mask.long()], dim=1)
            logits, values = self._forward(self.model, ids, full_mask, s.query.shape[1], s.media)
            logprobs = _logprobs(logits, s.responses, c.temperature)
            ref_logits = self._reference_logits(ids, full_mask, s.media)[:, s.query.shape[1] - 1 : -1].float()
            ref_logprobs = _logprobs(ref_logits, s.responses, c.temperature)
            texts = [self.tokenizer.decode(row[m.bool()], skip_special_tokens=True) for row, m in zip(s.responses, s.mask)]
            if isinstance(self.scorer, MediaRewardScorer):
                parts = s.parts or [()] * len(s.prompts)
                raw = self.scorer([PPOPrompt(t, m) for t, m in zip(s.prompts, parts)], texts)
            else:
                raw = self.scorer(s.prompts, texts)
        return Rollout(s.query, s.query_mask, s.responses, s.mask, logprobs * s.mask, values * s.mask,
                       self._shape_scores(raw, s.truncated), (logprobs - ref_logprobs) * s.mask, s.truncated, raw,
                       s.media)

    def _shape_scores(self, raw: Any, truncated: Any) -> Any:
        c = self.config
        scores = raw
        if c.normalize_reward:
            self.moments.update(self._gather(raw).tolist())
            scores = (scores - self.moments.mean) / self.moments.std
        if c.whiten_rewards:
            everything = self._gather(scores)
            if len(everything) > 1:
                scores = (scores - everything.mean()) / (everything.std() + 1e-8)
        if c.reward_clip is not None:
            scores = scores.clamp(-c.reward_clip, c.reward_clip)
        if c.missing_eos_penalty is not None:
            scores = scores - c.missing_eos_penalty * truncated.float()
        return scores

    def rollout(self, prompts: Sequence[str | PPOPrompt]) -> Rollout:
        return self.evaluate(self.generate(prompts))

    # -- one PPO iteration ---------------------------------------------------------------------
    def step(self, prompts: Sequence[str | PPOPrompt]) -> dict[str, float]:
        return self.learn(self.rollout(prompts))

    def _ptx_batch(self, update: int) -> Any:
        c, n = self.config, len(self.ptx)
        start = (update * self.world + self.rank) * c.ptx_batch_size
        texts = [self.ptx[(start + i) % n] for i in range(c.ptx_batch_size)]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, padding_side="right",
                               add_special_tokens=False).to(self.accelerator.device)
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        return batch

    def learn(self, r: Rollout) -> dict[str, float]:
        import torch

        c = self.config
        learning_rate = self.scheduler.get_last_lr()[0]  # the first update's, logged with this iteration
        if c.advantage_estimator == "gae":
            rewards = -c.kl_coef * r.kl
            last = (r.mask.sum(dim=1).long() - 1).clamp(min=0)
            rewards[torch.arange(len(last)), last] += r.scores
            advantages, returns = gae(rewards, r.values, r.mask, c.gamma, c.lam)
            advantages = self._whiten(advantages, r.mask)
        else:  # one advantage per response on each of its tokens; grpo puts the KL in the loss instead
            scores = r.scores - c.kl_coef * r.kl.sum(1) if c.advantage_estimator == "rloo" else r.scores
            advantages = group_advantages(scores, c.num_generations, c.advantage_estimator)[:, None] * r.mask
            returns = torch.zeros_like(advantages)
        ids = torch.cat([r.query, r.responses], dim=1)
        full_mask = torch.cat([r.query_mask, r.mask.long()], dim=1)
        n = len(r.responses)
        size = n // c.mini_batches
        micro = size // c.gradient_accumulation_steps
        stats: dict[str, list[float]] = {k: [] for k in ("pg_loss", "vf_loss", "clipfrac", "approx_kl", "entropy",
                                                          "grad_norm", "ptx_loss")}
        self.model.train()
        for _ in range(c.ppo_epochs):
            # one minibatch: in order, so media features with several rows per prompt stay aligned
            order = torch.randperm(n, device=r.responses.device) if size < n else torch.arange(n, device=r.responses.device)
            for start in range(0, n, size):
                minibatch = order[start : start + size]
                # each process divides by the global token count / world size; DDP averages the gradients
                tokens = self._global_sum(r.mask[minibatch]).clamp(min=1) / self.world
                for k, micro_start in enumerate(range(0, size, micro)):
                    idx = minibatch[micro_start : micro_start + micro]
                    final = k == c.gradient_accumulation_steps - 1
                    # DeepSpeed accumulates by itself (and ZeRO-2 has no no_sync)
                    context = self.accelerator.no_sync(self.model) if not final and not self.deepspeed \
                        else contextlib.nullcontext()
                    with context, self.accelerator.autocast():
                        loss, parts = self._loss(r, idx, ids, full_mask, advantages, returns, tokens)
                        if final and self.ptx:
                            ptx = self.unwrapped_policy()(**self._ptx_batch(self._updates)).loss
                            loss = loss + c.ptx_coef * ptx
                            stats["ptx_loss"].append(float(ptx.detach()))
                        # DeepSpeed divides by its gradient_accumulation_steps; the token means already did
                        self.accelerator.backward(loss * c.gradient_accumulation_steps if self.deepspeed else loss)
                    for key, value in parts.items():
                        stats[key].append(value)
                if c.max_grad_norm is not None:  # under DeepSpeed its engine clips; this reads the norm
                    norm = self.accelerator.clip_grad_norm_(self.model.parameters(), c.max_grad_norm)
                    if norm is not None:
                        stats["grad_norm"].append(float(norm))
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad()
                self._updates += 1
        self.iteration += 1
        return self._record(r, stats, learning_rate)

    def _loss(self, r: Rollout, idx: Any, ids: Any, full_mask: Any, advantages: Any, returns: Any,
              tokens: Any) -> tuple[Any, dict[str, float]]:
        import torch

        c = self.config
        mask = r.mask[idx]
        media = _rows(r.media, idx, len(r.responses))
        logits, vpred = self._forward(self.model, ids[idx], full_mask[idx], r.query.shape[1], media)
        new_logprobs = _logprobs(logits, r.responses[idx], c.temperature)
        v_clipped = r.values[idx] + (vpred - r.values[idx]).clamp(-c.clip_range_value, c.clip_range_value)
        vf_terms = 0.5 * torch.max((vpred - returns[idx]) ** 2, (v_clipped - returns[idx]) ** 2)
        log_ratio = (new_logprobs - r.logprobs[idx]) * mask
        ratio = torch.exp(log_ratio)
        adv = advantages[idx]
        pg_terms = torch.max(-adv * ratio, -adv * ratio.clamp(1 - c.clip_range, 1 + c.clip_range))
        loss = (pg_terms * mask).sum() / tokens
        if c.advantage_estimator == "gae":
            loss = loss + c.vf_coef * (vf_terms * mask).sum() / tokens
        elif c.advantage_estimator == "grpo":  # k3 estimate of KL(pi || pi_ref), as TRL's GRPO
            to_ref = (r.logprobs[idx] - r.kl[idx]) - new_logprobs
            loss = loss + c.kl_coef * ((torch.exp(to_ref) - to_ref - 1) * mask).sum() / tokens
        with torch.no_grad():
            parts = {"pg_loss": float(masked_mean(pg_terms, mask)),
                     **({"vf_loss": float(masked_mean(vf_terms, mask))} if c.advantage_estimator == "gae" else {}),
                     "clipfrac": float(masked_mean(((ratio - 1).abs() > c.clip_range).float(), mask)),
                     "approx_kl": float(0.5 * masked_mean(log_ratio ** 2, mask)),
                     "entropy": float(masked_mean(_entropy(logits, c.temperature), mask))}
        return loss, parts

    def _record(self, r: Rollout, stats: dict[str, list[float]], learning_rate: float) -> dict[str, float]:
        import torch

        raw = r.raw_scores if r.raw_scores is not None else r.scores
        truncated = r.truncated if r.truncated is not None else torch.zeros_like(r.scores)
        means = self._gather(torch.stack([v.float() for v in (raw.mean(), r.scores.mean(), r.kl.sum(1).mean(),
                                                              r.mask.sum(1).mean(), truncated.float().mean())]))
        means = means.reshape(self.world, -1).mean(0).tolist()
        record = {"iteration": self.iteration, "score": means[0], "reward": means[1], "kl": means[2],
                  "response_length": means[3], "truncated": means[4],
                  "learning_rate": learning_rate,
                  **{k: sum(v) / len(v) for k, v in stats.items() if v}}
        self.history.append(record)
        return record

    # -- checkpoints ---------------------------------------------------------------------------
    def save_state(self, folder: Path) -> None:
        self.accelerator.save_state(str(folder))
        if self.accelerator.is_main_process:
            write_json_atomic(folder / STATE_FILE, {"iteration": self.iteration, "history": self.history,
                                                    "reward_moments": self.moments.to_json()})

    def load_state(self, folder: Path) -> None:
        self.accelerator.load_state(str(folder))
        state = json.loads((folder / STATE_FILE).read_text())
        self.iteration, self.history = state["iteration"], state["history"]
        self._updates = self.iteration * self.config.ppo_epochs * self.config.mini_batches
        self.moments.load(state.get("reward_moments", self.moments.to_json()))

    def batches(self) -> Any:
        """(iteration, this process's prompts) for each iteration, reproducible by iteration number (for
        resume). Every process draws the same global batch of batch_size x world prompts and takes its
        own slice, so the processes' prompts are disjoint."""
        rng = random.Random(self.config.seed)
        order: list[str] = []
        iteration = 0
        size = self.config.batch_size
        while True:
            batch = []
            while len(batch) < size * self.world:
                if not order:
                    order = list(self.prompts)
                    rng.shuffle(order)
                batch.append(order.pop())
            iteration += 1
            yield iteration, batch[self.rank * size : (self.rank + 1) * size]

    def policy_to_save(self, policy: Any) -> Any:
        if self.config.lora:
            policy = policy.merge_and_unload()
        policy.config.use_cache = True
        return policy


def _accelerator(config: PPOConfig, precision: Precision, report_to: str) -> Any:
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import InitProcessGroupKwargs

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    # without a GPU accelerate picks no process-group backend: name gloo (see the notes)
    handlers = [InitProcessGroupKwargs(backend="gloo")] if distributed and not torch.cuda.is_available() else []
    plugin = _deepspeed_plugin(config.deepspeed)
    # accelerate's states are process-wide singletons, and AcceleratorState refuses another mixed_precision than
    # an earlier stage of this process set (a bf16 DPO before an fp32 PPO); the process group (PartialState) stays
    AcceleratorState._reset_state()
    GradientState._reset_state()
    # `accelerate launch` with a DeepSpeed config asks for it through the environment; cpu=True would drop it
    return Accelerator(cpu=not torch.cuda.is_available() and not precision.deepspeed, kwargs_handlers=handlers,
                       mixed_precision=precision.mixed_precision, deepspeed_plugin=plugin,
                       log_with=None if report_to == "none" else report_to,
                       project_dir=str(Path(config.output_dir) / "logs"))


def _schedule(config: PPOConfig, optimizer: Any) -> Any:
    """Warm-up then decay over every optimizer step of the run (transformers.get_scheduler)."""
    import transformers

    total = config.max_steps * config.ppo_epochs * config.mini_batches
    return transformers.get_scheduler(config.lr_scheduler_type, optimizer,
                                      num_warmup_steps=int(config.warmup_ratio * total), num_training_steps=total)


def _deepspeed_plugin(path: str | None) -> Any:
    """A DeepSpeedPlugin for a DeepSpeed JSON config, or None (then `accelerate launch --use_deepspeed` may
    still have set one up through the environment)."""
    if not path:
        return None
    from accelerate.utils import DeepSpeedPlugin

    return DeepSpeedPlugin(hf_ds_config=str(path))


def _last_state(folder: Path) -> Path | None:
    states = sorted((p for p in folder.glob("iteration-*") if (p / STATE_FILE).exists()),
                    key=lambda p: int(p.name.split("-")[1]))
    return states[-1] if states else None


@dataclass
class PPOResult(TrainResult):
    history: list[dict[str, float]] = field(default_factory=list)


def train_ppo(config: PPOConfig, method: str | None = None, lineage_extra: dict[str, Any] | None = None,
              stop_after: int | None = None, evaluators: Sequence[Any] = (), stage: str = "ppo",
              stage_config: Any = None) -> PPOResult:
    """Run PPO for `max_steps` iterations; resumable; saves model/ with lineage.
    `stop_after` ends early without finishing (tests use it to stand in for a crash). `evaluators`
    (align/callback.py's EvalAnythingCallback, from stage_callbacks) evaluate the live policy every
    `every` iterations (one optimiser step each with ppo_epochs and mini_batches 1). `stage` and
    `stage_config` name the stage the folder is for, when another stage (rloo, grpo) runs as this one."""
    out = Path(config.output_dir)
    artifact = Artifact(out)
    data = [fingerprint(config.prompts), fingerprint(config.reward_model)]
    if config.ptx_data:
        data.append(fingerprint(config.ptx_data))
    base = fingerprint(config.model)
    described = stage_config or config
    if artifact.open(stage, described, data + [base], model={"reference": config.model}):
        manifest = artifact.manifest() or {}
        return PPOResult(out, out / MODEL_DIR, manifest, skipped=True, history=manifest.get("history", []))
    records = load_llf_records(config.prompts)
    if config.limit is not None:
        records = records[: config.limit]
    trainer = PPOTrainer(config, [])
    for record in records:
        prompt, _ = render_prompt(trainer.inputs, record.parts())
        trainer.prompts.append(PPOPrompt(prompt, tuple(m.part() for m in record.media)))
    checkpoints = out / CHECKPOINTS_DIR
    resume = _last_state(checkpoints)
    if resume is not None:
        trainer.load_state(resume)
        log.info("ppo: resumed from %s (iteration %d)", resume, trainer.iteration)
    metrics = MetricsFile(out) if trainer.accelerator.is_main_process else None
    for iteration, batch in trainer.batches():
        if iteration > config.max_steps:
            break
        if iteration <= trainer.iteration:
            continue  # done before the crash; the batch order is replayed so the data order matches
        stats = trainer.step(batch)
        log.info("ppo: iteration %d score %.4f kl %.4f pg %.4f vf %s", iteration, stats["score"], stats["kl"],
                 stats["pg_loss"], f"{stats['vf_loss']:.4f}" if "vf_loss" in stats else "-")
        if metrics is not None:
            metrics.write(iteration, {k: v for k, v in stats.items() if k != "iteration"})
        trainer.accelerator.log({k: v for k, v in stats.items() if k != "iteration"}, step=iteration)
        _evaluate_in_loop(trainer, evaluators, iteration, checkpoints)
        if config.save_steps and iteration % config.save_steps == 0 and iteration < config.max_steps:
            trainer.save_state(checkpoints / f"iteration-{iteration}")
            trainer.accelerator.wait_for_everyone()
            if trainer.accelerator.is_main_process:
                for old in checkpoints.glob("iteration-*"):
                    if old.name != f"iteration-{iteration}":
                        shutil.rmtree(old, ignore_errors=True)
        if stop_after is not None and iteration >= stop_after:
            return PPOResult(out, out / MODEL_DIR, {}, history=trainer.history)
    final, partial = out / MODEL_DIR, out / (MODEL_DIR + ".partial")
    info = {**lineage(method or stage, described, data, base), **(lineage_extra or {})}
    trainer.accelerator.wait_for_everyone()
    with trainer.whole_policy() as policy:  # every process gathers its ZeRO-3 shards; the main one saves
        if trainer.accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
            trainer.policy_to_save(policy).save_pretrained(partial)
    trainer.accelerator.end_training()  # last: it destroys the process group the barrier and gather need
    if not trainer.accelerator.is_main_process:
        return PPOResult(out, final, {}, history=trainer.history)
    trainer.processor.save_pretrained(partial)
    write_json_atomic(partial / LINEAGE_FILE, info)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    ran_as = {"ran_as": {"trainer": "eval_anything.align.ppo", "config": config.to_dict()}} if stage_config else {}
    manifest = artifact.finish(history=trainer.history, resumed_from=str(resume) if resume else None, **ran_as,
                               lineage=info, model_dir=str(final), precision=trainer.precision.to_json(),
                               distributed={"processes": trainer.world,
                                            "type": str(trainer.accelerator.distributed_type).split(".")[-1]})
    return PPOResult(out, final, manifest, history=trainer.history, resumed_from=str(resume) if resume else None)


def _evaluate_in_loop(trainer: PPOTrainer, evaluators: Sequence[Any], iteration: int, folder: Path) -> None:
    """The in-loop evaluations due at this iteration, on the main process with the live policy (the
    others wait); each is a run directory whose lineage names base, method and step."""
    due = [e for e in evaluators if iteration % e.every == 0]
    if not due:
        return
    with trainer.whole_policy() as policy:  # under ZeRO-3 every process gathers; the main one evaluates
        if trainer.accelerator.is_main_process:
            policy.config.use_cache = True  # off for training (no cache in the forward passes); on to generate
            try:
                for evaluator in due:
                    evaluator.evaluate(policy, trainer.processor, iteration, folder)
            finally:
                policy.config.use_cache = False
    trainer.accelerator.wait_for_everyone()


def mean_reward(policy: str, reward_model: str, prompts: Sequence[str], samples: int = 4, max_new_tokens: int = 16,
                temperature: float = 1.0, seed: int = 0) -> float:
    """The reward model's mean score of `samples` sampled responses per prompt (prompts already rendered)."""
    import torch

    model, processor, _ = load_for_training(policy)
    model.eval()
    tokenizer = getattr(processor, "tokenizer", processor)
    scorer = RewardScorer(model_dir(reward_model), torch.device("cpu"))
    eos_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    torch.manual_seed(seed)
    total, count = 0.0, 0
    batch = tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    for _ in range(samples):
        with torch.no_grad():
            out = model.generate(**batch, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                                 max_new_tokens=max_new_tokens, min_new_tokens=1,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=sorted(eos_ids))
        responses = out[:, batch["input_ids"].shape[1]:]
        mask = response_mask(responses, eos_ids)
        texts = [tokenizer.decode(row[m.bool()], skip_special_tokens=True) for row, m in zip(responses, mask)]
        scores = scorer(prompts, texts)
        total += float(scores.sum())
        count += len(texts)
    return total / count
