"""align precision: dtype auto resolves per device, explicit values are honoured, quantisation and master-weight
errors are clear; bf16 is mixed precision (fp32 master weights under bf16 autocast, so a step at lr 1e-6 moves
the weights; bf16 master weights lose it); a bf16 stage and an fp32 PPO run in one process."""
import json

import pytest

from eval_anything.align.config import ConfigError, DPOConfig, PPOConfig
from eval_anything.align.records import write_jsonl
from eval_anything.errors import UsageError


def _dpo(tmp_path, **changes):
    return DPOConfig.from_dict({"model": "m", "pairs": "p", "output_dir": str(tmp_path / "dpo"), **changes})


def test_dtype_auto_per_device_and_clear_errors(tmp_path, monkeypatch):
    import torch

    from eval_anything.align import precision

    cpu = precision.resolve(_dpo(tmp_path))
    assert (cpu.dtype, cpu.mixed_precision, cpu.trained_dtype, cpu.frozen_dtype) == ("fp32", "no", torch.float32,
                                                                                     torch.float32)
    assert cpu.trainer_flags({"activation_checkpointing"}) == {"bf16": False, "fp16": False,
                                                               "activation_checkpointing": False}
    explicit = precision.resolve(_dpo(tmp_path, dtype="bf16", gradient_checkpointing=True))
    assert (explicit.dtype, explicit.mixed_precision, explicit.master_weights) == ("bf16", "bf16", "fp32")
    assert (explicit.trained_dtype, explicit.frozen_dtype) == (torch.float32, torch.bfloat16)
    assert explicit.trainer_flags({"gradient_checkpointing"})["gradient_checkpointing"] is True
    half = precision.resolve(_dpo(tmp_path, dtype="bf16", master_weights="bf16"))
    assert (half.master_weights, half.trained_dtype) == ("bf16", torch.bfloat16)
    assert precision.resolve(_dpo(tmp_path, master_weights="bf16")).master_weights == "fp32"  # no bf16 on CPU
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        precision.resolve(_dpo(tmp_path, dtype="fp16"))
    with pytest.raises(ConfigError, match="dtype must be one of auto, bf16, fp16, fp32, got 'half'"):
        _dpo(tmp_path, dtype="half")
    with pytest.raises(ConfigError, match="master_weights must be one of fp32, bf16, got 'fp16'"):
        _dpo(tmp_path, master_weights="fp16")
    with pytest.raises(ConfigError, match="master_weights bf16 cannot be combined with deepspeed"):
        _dpo(tmp_path, master_weights="bf16", deepspeed="ds.json")
    with pytest.raises(ConfigError, match="quantization 4bit loads a frozen base; set lora: true"):
        _dpo(tmp_path, quantization="4bit")

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # what `accelerate launch --use_deepspeed` sets
    deepspeed = precision.resolve(_dpo(tmp_path, dtype="bf16"))  # DeepSpeed keeps the fp32 master itself
    assert (deepspeed.deepspeed, deepspeed.master_weights, deepspeed.trained_dtype) == (True, "fp32", torch.bfloat16)
    with pytest.raises(UsageError, match="master_weights bf16 cannot be combined with DeepSpeed"):
        precision.resolve(_dpo(tmp_path, dtype="bf16", master_weights="bf16"))
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")

    monkeypatch.setattr(precision.importlib.util, "find_spec", lambda name: None)  # bitsandbytes not installed
    with pytest.raises(ValueError, match=r"needs bitsandbytes: pip install 'eval-anything\[quant\]'"):
        precision.resolve(_dpo(tmp_path, quantization="8bit", lora=True))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # what auto picks on each kind of GPU
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert precision.resolve(_dpo(tmp_path)).dtype == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    fp16 = precision.resolve(_dpo(tmp_path))
    assert (fp16.dtype, fp16.trained_dtype, fp16.frozen_dtype, fp16.trainer_flags(set())["fp16"]) == \
        ("fp16", torch.float32, torch.float32, True)


def _changed(before, after):
    """The fraction of trained weights a step changed; embedding rows of tokens absent from the batch get no
    gradient (the tiny model's embeddings are untied), so they are left out."""
    import torch

    keys = [k for k in before if "embed_tokens" not in k]
    changed = sum(int((before[k].to(after[k].dtype) != after[k]).sum()) for k in keys)
    return changed / sum(before[k].numel() for k in keys)


def test_bf16_trains_fp32_master_weights_and_bf16_master_weights_lose_small_updates(tmp_path, tiny_llama_dir):
    """One DPO step at lr 1e-6 (Adam's first step moves each weight by ~1e-6, under a bf16 ulp): with fp32
    master weights nearly every weight moves; kept in bf16 nearly none does. The DPO reference is frozen: bf16."""
    import torch
    from safetensors.torch import load_file

    from eval_anything.align.metrics import read_metrics
    from eval_anything.align.train import dpo_trainer, train_dpo

    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, [{"id": str(i), "prompt": f"{i}+{i}?", "chosen": str(2 * i), "rejected": "no"} for i in range(4)])
    before = load_file(tiny_llama_dir / "model.safetensors")
    configs = {master: DPOConfig.from_dict({
        "model": str(tiny_llama_dir), "pairs": str(pairs), "dtype": "bf16", "master_weights": master,
        "gradient_checkpointing": master == "fp32", "output_dir": str(tmp_path / master), "max_steps": 1,
        "learning_rate": 1e-6, "max_length": 64}) for master in ("fp32", "bf16")}
    trainer, _ = dpo_trainer(configs["fp32"])
    assert (trainer.model.dtype, trainer.ref_model.dtype) == (torch.float32, torch.bfloat16)
    results = {master: train_dpo(config) for master, config in configs.items()}
    mixed, half = results["fp32"], results["bf16"]
    assert mixed.manifest["precision"] == {"requested": "bf16", "dtype": "bf16", "gradient_checkpointing": True,
                                           "quantization": "none", "master_weights": "fp32", "deepspeed": False}
    assert half.manifest["precision"]["master_weights"] == "bf16"
    assert json.loads((mixed.model_dir / "config.json").read_text())["dtype"] == "float32"
    assert _changed(before, load_file(mixed.model_dir / "model.safetensors")) > 0.99
    assert _changed(before, load_file(half.model_dir / "model.safetensors")) < 0.10
    rows = read_metrics(tmp_path / "fp32" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1]
    assert {"loss", "rewards/margins", "rewards/accuracies", "learning_rate"} <= set(rows[0])


def test_a_bf16_stage_then_fp32_and_bf16_ppo_in_one_process(tmp_path, tiny_llama_dir):
    """accelerate's state is process-wide: PPO's accelerator must not inherit the mixed precision of the stage
    before it (`align compare` arms and the pipeline run stages so). bf16 PPO: policy and critic train in fp32,
    the reference and the reward model score in bf16; with LoRA the bases are frozen (bf16), the adapters fp32."""
    import torch
    from tiny_models import make_tiny_llama_reward

    from eval_anything.align.ppo import PPOTrainer, train_ppo
    from eval_anything.align.train import train_dpo

    pairs, prompts = tmp_path / "pairs.jsonl", tmp_path / "prompts.jsonl"
    write_jsonl(pairs, [{"id": str(i), "prompt": f"{i}+{i}?", "chosen": str(2 * i), "rejected": "no"} for i in range(4)])
    write_jsonl(prompts, [{"id": str(i), "prompt": f"{i}+{i}?"} for i in range(2)])
    reward = make_tiny_llama_reward(tmp_path / "reward", tiny_llama_dir)
    dpo = train_dpo(DPOConfig.from_dict({"model": str(tiny_llama_dir), "pairs": str(pairs), "dtype": "bf16",
                                         "output_dir": str(tmp_path / "dpo"), "max_steps": 1, "max_length": 64}))
    ppo = {"model": str(dpo.model_dir), "reward_model": str(reward), "prompts": str(prompts), "max_steps": 1,
           "batch_size": 2, "response_length": 4}
    result = train_ppo(PPOConfig.from_dict({**ppo, "dtype": "fp32", "output_dir": str(tmp_path / "ppo")}))
    assert result.manifest["precision"]["dtype"] == "fp32" and len(result.history) == 1
    trainer = PPOTrainer(PPOConfig.from_dict({**ppo, "dtype": "bf16", "output_dir": str(tmp_path / "ppo-bf16")}), [])
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert trainer.accelerator.mixed_precision == "bf16"
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.dtype for p in trainer.reference.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in trainer.scorer.model.parameters()} == {torch.bfloat16}
    lora = PPOTrainer(PPOConfig.from_dict({**ppo, "dtype": "bf16", "lora": True, "critic_lora": True,
                                           "output_dir": str(tmp_path / "ppo-lora")}), [])
    dtypes = {(p.requires_grad, p.dtype) for p in lora.accelerator.unwrap_model(lora.model).parameters()}
    assert dtypes == {(True, torch.float32), (False, torch.bfloat16)}  # adapters and critic head; the frozen bases
