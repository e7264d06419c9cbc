"""PPO for language models on accelerate, against a trained reward model.

TRL removed its PPO trainer after 1.12 (see ../shared/NOTES-training-stack.md), so this is ours.
One iteration:

1. Rollout: sample a response per prompt from the policy (temperature T); the response ends at
   its first EOS (later tokens are masked out).
2. Score: the reward model scores prompt + response (as the rm stage trained it: the rendered
   prompt, the response, EOS).
3. Per-token reward: -kl_coef * (log pi(a|s) - log pi_ref(a|s)) on every response token, plus
   the reward-model score on the last one (the KL penalty keeps the policy near the reference).
4. GAE: delta_t = r_t + gamma V(s_{t+1}) - V(s_t); A_t = sum_k (gamma lam)^k delta_{t+k};
   returns = A + V; advantages whitened over the valid tokens.
5. `ppo_epochs` passes of minibatch updates on
   L = E[max(-A r, -A clip(r, 1-eps, 1+eps))] + vf_coef * 0.5 E[max((V-R)^2, (V_clip-R)^2)],
   r = exp(log pi - log pi_old), V_clip = V_old + clip(V - V_old, -eps_v, eps_v).

The value function is a linear head on the policy's last hidden state (a shared trunk, as in
the original RLHF setups). Positions are computed from the attention mask, so left padding
does not shift them. Checkpoints (accelerate state: model, value head, optimizer, RNG) are
written every `save_steps` iterations and resumed from after a crash.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from eval_anything.align.artifacts import Artifact, fingerprint
from eval_anything.align.config import PPOConfig
from eval_anything.align.data import load_llf_records
from eval_anything.align.train import (CHECKPOINTS_DIR, MODEL_DIR, TrainResult, lineage, load_for_training, model_dir,
                                       render_prompt)
from eval_anything.manifest import LINEAGE_FILE
from eval_anything.rundir import write_json_atomic

log = logging.getLogger("eval_anything.align")
STATE_FILE = "ppo_state.json"


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


def _value_model(policy: Any) -> Any:
    import torch

    class PolicyWithValueHead(torch.nn.Module):
        """The policy plus a scalar value head on its last hidden state."""

        def __init__(self, policy: Any) -> None:
            super().__init__()
            self.policy = policy
            hidden = policy.config.get_text_config().hidden_size
            self.value_head = torch.nn.Linear(hidden, 1)
            torch.nn.init.normal_(self.value_head.weight, std=1.0 / (hidden + 1) ** 0.5)
            torch.nn.init.zeros_(self.value_head.bias)

        def forward(self, input_ids: Any, attention_mask: Any) -> tuple[Any, Any]:
            positions = (attention_mask.cumsum(1) - 1).clamp(min=0)
            out = self.policy(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                              output_hidden_states=True)
            return out.logits, self.value_head(out.hidden_states[-1]).squeeze(-1)

    return PolicyWithValueHead(policy)


def _logprobs(logits: Any, tokens: Any, temperature: float) -> Any:
    import torch

    return torch.log_softmax(logits / temperature, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


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


class RewardScorer:
    """Scores prompt + response texts with a sequence-classification reward model."""

    def __init__(self, reference: str, device: Any) -> None:
        import torch
        import transformers

        path = model_dir(reference)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = transformers.AutoModelForSequenceClassification.from_pretrained(
            path, dtype=torch.float32).to(device).eval()
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


class PPOTrainer:
    """Holds the policy (+ value head), frozen reference, reward scorer, optimizer and accelerator."""

    def __init__(self, config: PPOConfig, prompts: Sequence[str]) -> None:
        import copy

        import torch
        from accelerate import Accelerator
        from accelerate.utils import InitProcessGroupKwargs, set_seed

        self.config = config
        distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        # without a GPU accelerate picks no process-group backend: name gloo (see the notes)
        handlers = [InitProcessGroupKwargs(backend="gloo")] if distributed and not torch.cuda.is_available() else []
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=handlers,
                                       gradient_accumulation_steps=1)
        set_seed(config.seed)
        policy, self.processor, self.inputs = load_for_training(config.model, config.video_frames)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.eos_ids = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} - {None}
        gen_eos = policy.generation_config.eos_token_id
        self.eos_ids |= set(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos] if gen_eos is not None else [])
        policy.config.use_cache = False
        self.reference = copy.deepcopy(policy).to(self.accelerator.device).eval().requires_grad_(False)
        self.model = _value_model(policy)
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.learning_rate, eps=1e-5)
        self.model, self.optimizer = self.accelerator.prepare(self.model, optimizer)
        self.model.eval()  # no dropout: the old and new log-probabilities must come from the same function
        self.scorer = RewardScorer(config.reward_model, self.accelerator.device)
        self.prompts = list(prompts)
        self.history: list[dict[str, float]] = []
        self.iteration = 0

    # -- rollout -------------------------------------------------------------------------------
    def _forward(self, model: Any, ids: Any, mask: Any, query_length: int) -> tuple[Any, Any]:
        logits, values = model(ids, mask)
        return logits[:, query_length - 1 : -1], values[:, query_length - 1 : -1]

    def rollout(self, prompts: Sequence[str]) -> Rollout:
        import torch

        device = self.accelerator.device
        batch = self.tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left",
                               add_special_tokens=False).to(device)
        query, query_mask = batch["input_ids"], batch["attention_mask"]
        policy = self.accelerator.unwrap_model(self.model).policy
        with torch.no_grad():
            generated = policy.generate(input_ids=query, attention_mask=query_mask, do_sample=True,
                                        temperature=self.config.temperature, top_k=0, top_p=1.0,
                                        max_new_tokens=self.config.response_length,
                                        min_new_tokens=1, pad_token_id=self.tokenizer.pad_token_id,
                                        eos_token_id=sorted(self.eos_ids))
            responses = generated[:, query.shape[1]:]
            mask = response_mask(responses, self.eos_ids)
            ids = torch.cat([query, responses], dim=1)
            full_mask = torch.cat([query_mask, mask.long()], dim=1)
            logits, values = self._forward(self.model, ids, full_mask, query.shape[1])
            logprobs = _logprobs(logits, responses, self.config.temperature)
            ref_logits = self.reference(input_ids=ids, attention_mask=full_mask,
                                        position_ids=(full_mask.cumsum(1) - 1).clamp(min=0)).logits
            ref_logprobs = _logprobs(ref_logits[:, query.shape[1] - 1 : -1], responses, self.config.temperature)
            texts = [self.tokenizer.decode(row[m.bool()], skip_special_tokens=True) for row, m in zip(responses, mask)]
            scores = self.scorer(prompts, texts)
        return Rollout(query, query_mask, responses, mask, logprobs * mask, values * mask, scores,
                       (logprobs - ref_logprobs) * mask)

    # -- one PPO iteration ---------------------------------------------------------------------
    def step(self, prompts: Sequence[str]) -> dict[str, float]:
        import torch

        c = self.config
        r = self.rollout(prompts)
        scores = r.scores
        if c.whiten_rewards and len(scores) > 1:
            scores = (scores - scores.mean()) / (scores.std() + 1e-8)
        rewards = -c.kl_coef * r.kl
        last = (r.mask.sum(dim=1).long() - 1).clamp(min=0)
        rewards[torch.arange(len(last)), last] += scores
        advantages, returns = gae(rewards, r.values, r.mask, c.gamma, c.lam)
        advantages = masked_whiten(advantages, r.mask)
        ids = torch.cat([r.query, r.responses], dim=1)
        full_mask = torch.cat([r.query_mask, r.mask.long()], dim=1)
        n = len(prompts)
        size = max(1, n // c.mini_batches)
        stats: dict[str, list[float]] = {"pg_loss": [], "vf_loss": [], "clipfrac": [], "approx_kl": []}
        for _ in range(c.ppo_epochs):
            order = torch.randperm(n)
            for start in range(0, n, size):
                idx = order[start : start + size]
                mask = r.mask[idx]
                logits, vpred = self._forward(self.model, ids[idx], full_mask[idx], r.query.shape[1])
                new_logprobs = _logprobs(logits, r.responses[idx], c.temperature)
                v_clipped = r.values[idx] + (vpred - r.values[idx]).clamp(-c.clip_range_value, c.clip_range_value)
                vf_loss = 0.5 * masked_mean(torch.max((vpred - returns[idx]) ** 2,
                                                      (v_clipped - returns[idx]) ** 2), mask)
                log_ratio = (new_logprobs - r.logprobs[idx]) * mask
                ratio = torch.exp(log_ratio)
                adv = advantages[idx]
                pg_loss = masked_mean(torch.max(-adv * ratio, -adv * ratio.clamp(1 - c.clip_range, 1 + c.clip_range)),
                                      mask)
                loss = pg_loss + c.vf_coef * vf_loss
                self.accelerator.backward(loss)
                self.optimizer.step()
                self.optimizer.zero_grad()
                with torch.no_grad():
                    stats["pg_loss"].append(float(pg_loss))
                    stats["vf_loss"].append(float(vf_loss))
                    stats["clipfrac"].append(float(masked_mean(((ratio - 1).abs() > c.clip_range).float(), mask)))
                    stats["approx_kl"].append(float(0.5 * masked_mean(log_ratio ** 2, mask)))
        self.iteration += 1
        record = {"iteration": self.iteration, "score": float(r.scores.mean()),
                  "kl": float((r.kl.sum(1)).mean()), "response_length": float(r.mask.sum(1).mean()),
                  **{k: sum(v) / len(v) for k, v in stats.items()}}
        self.history.append(record)
        return record

    # -- checkpoints ---------------------------------------------------------------------------
    def save_state(self, folder: Path) -> None:
        self.accelerator.save_state(str(folder))
        if self.accelerator.is_main_process:
            write_json_atomic(folder / STATE_FILE, {"iteration": self.iteration, "history": self.history})

    def load_state(self, folder: Path) -> None:
        self.accelerator.load_state(str(folder))
        state = json.loads((folder / STATE_FILE).read_text())
        self.iteration, self.history = state["iteration"], state["history"]

    def batches(self) -> Any:
        """Prompt batches for each iteration, reproducible by iteration number (for resume)."""
        rng = random.Random(self.config.seed)
        order: list[str] = []
        iteration = 0
        while True:
            batch = []
            while len(batch) < self.config.batch_size:
                if not order:
                    order = list(self.prompts)
                    rng.shuffle(order)
                batch.append(order.pop())
            iteration += 1
            yield iteration, batch


def _last_state(folder: Path) -> Path | None:
    states = sorted((p for p in folder.glob("iteration-*") if (p / STATE_FILE).exists()),
                    key=lambda p: int(p.name.split("-")[1]))
    return states[-1] if states else None


@dataclass
class PPOResult(TrainResult):
    history: list[dict[str, float]] = field(default_factory=list)


def train_ppo(config: PPOConfig, method: str | None = None, lineage_extra: dict[str, Any] | None = None,
              stop_after: int | None = None) -> PPOResult:
    """Run PPO for `max_steps` iterations; resumable; saves model/ with lineage.
    `stop_after` ends early without finishing (tests use it to stand in for a crash)."""
    out = Path(config.output_dir)
    artifact = Artifact(out)
    data = [fingerprint(config.prompts), fingerprint(config.reward_model)]
    base = fingerprint(config.model)
    if artifact.open("ppo", config, data + [base], model={"reference": config.model}):
        manifest = artifact.manifest() or {}
        return PPOResult(out, out / MODEL_DIR, manifest, skipped=True, history=manifest.get("history", []))
    records = load_llf_records(config.prompts)
    if config.limit is not None:
        records = records[: config.limit]
    trainer = PPOTrainer(config, [])
    for record in records:
        prompt, images = render_prompt(trainer.inputs, record.parts())
        if images:
            raise ValueError("the ppo stage takes text prompts only")
        trainer.prompts.append(prompt)
    checkpoints = out / CHECKPOINTS_DIR
    resume = _last_state(checkpoints)
    if resume is not None:
        trainer.load_state(resume)
        log.info("ppo: resumed from %s (iteration %d)", resume, trainer.iteration)
    for iteration, batch in trainer.batches():
        if iteration > config.max_steps:
            break
        if iteration <= trainer.iteration:
            continue  # done before the crash; the batch order is replayed so the data order matches
        stats = trainer.step(batch)
        log.info("ppo: iteration %d score %.4f kl %.4f pg %.4f vf %.4f", iteration, stats["score"], stats["kl"],
                 stats["pg_loss"], stats["vf_loss"])
        if config.save_steps and iteration % config.save_steps == 0 and iteration < config.max_steps:
            trainer.save_state(checkpoints / f"iteration-{iteration}")
            for old in checkpoints.glob("iteration-*"):
                if old.name != f"iteration-{iteration}":
                    shutil.rmtree(old, ignore_errors=True)
        if stop_after is not None and iteration >= stop_after:
            return PPOResult(out, out / MODEL_DIR, {}, history=trainer.history)
    final, partial = out / MODEL_DIR, out / (MODEL_DIR + ".partial")
    info = {**lineage(method or "ppo", config, data, base), **(lineage_extra or {})}
    trainer.accelerator.wait_for_everyone()
    if not trainer.accelerator.is_main_process:
        return PPOResult(out, final, {}, history=trainer.history)
    shutil.rmtree(partial, ignore_errors=True)
    policy = trainer.accelerator.unwrap_model(trainer.model).policy
    policy.config.use_cache = True
    policy.save_pretrained(partial)
    trainer.processor.save_pretrained(partial)
    write_json_atomic(partial / LINEAGE_FILE, info)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    manifest = artifact.finish(history=trainer.history, resumed_from=str(resume) if resume else None,
                               lineage=info, model_dir=str(final))
    return PPOResult(out, final, manifest, history=trainer.history, resumed_from=str(resume) if resume else None)


def mean_reward(policy: str, reward_model: str, prompts: Sequence[str], samples: int = 4, max_new_tokens: int = 16,
                temperature: float = 1.0, seed: int = 0) -> float:
    """The reward model's mean score of `samples` sampled responses per prompt (prompts already rendered)."""
    import torch

    model, processor, _ = load_for_training(policy)
    model.eval()
    tokenizer = getattr(processor, "tokenizer", processor)
    scorer = RewardScorer(reward_model, torch.device("cpu"))
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
