"""align precision: dtype auto resolves per device, explicit values are honoured, quantisation errors are
clear; a bf16 DPO step with activation checkpointing runs on CPU and its manifest and metrics say so."""
import json

import pytest

from eval_anything.align.config import ConfigError, DPOConfig
from eval_anything.align.records import write_jsonl


def _dpo(tmp_path, **changes):
    return DPOConfig.from_dict({"model": "m", "pairs": "p", "output_dir": str(tmp_path / "dpo"), **changes})


def test_dtype_auto_per_device_and_clear_errors(tmp_path, monkeypatch):
    import torch

    from eval_anything.align import precision

    cpu = precision.resolve(_dpo(tmp_path))
    assert (cpu.dtype, cpu.mixed_precision, cpu.load_dtype) == ("fp32", "no", torch.float32)
    assert cpu.trainer_flags({"activation_checkpointing"}) == {"bf16": False, "fp16": False,
                                                               "activation_checkpointing": False}
    explicit = precision.resolve(_dpo(tmp_path, dtype="bf16", gradient_checkpointing=True))
    assert (explicit.dtype, explicit.load_dtype) == ("bf16", torch.bfloat16)
    assert explicit.trainer_flags({"gradient_checkpointing"})["gradient_checkpointing"] is True
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        precision.resolve(_dpo(tmp_path, dtype="fp16"))
    with pytest.raises(ConfigError, match="dtype must be one of auto, bf16, fp16, fp32, got 'half'"):
        _dpo(tmp_path, dtype="half")
    with pytest.raises(ConfigError, match="quantization 4bit loads a frozen base; set lora: true"):
        _dpo(tmp_path, quantization="4bit")
    monkeypatch.setattr(precision.importlib.util, "find_spec", lambda name: None)  # bitsandbytes not installed
    with pytest.raises(ValueError, match=r"needs bitsandbytes: pip install 'eval-anything\[quant\]'"):
        precision.resolve(_dpo(tmp_path, quantization="8bit", lora=True))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # what auto picks on each kind of GPU
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert precision.resolve(_dpo(tmp_path)).dtype == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    fp16 = precision.resolve(_dpo(tmp_path))
    assert (fp16.dtype, fp16.load_dtype, fp16.trainer_flags(set())["fp16"]) == ("fp16", torch.float32, True)


def test_bf16_dpo_with_checkpointing_on_cpu_records_precision_and_metrics(tmp_path, tiny_llama_dir):
    from eval_anything.align.metrics import read_metrics
    from eval_anything.align.train import train_dpo

    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, [{"id": str(i), "prompt": f"{i}+{i}?", "chosen": str(2 * i), "rejected": "no"} for i in range(4)])
    result = train_dpo(DPOConfig.from_dict({"model": str(tiny_llama_dir), "pairs": str(pairs), "dtype": "bf16",
                                            "gradient_checkpointing": True, "output_dir": str(tmp_path / "dpo"),
                                            "max_steps": 2, "learning_rate": 1e-3, "max_length": 64}))
    assert result.manifest["precision"] == {"requested": "bf16", "dtype": "bf16", "gradient_checkpointing": True,
                                            "quantization": "none"}
    assert json.loads((result.model_dir / "config.json").read_text())["dtype"] == "bfloat16"
    rows = read_metrics(tmp_path / "dpo" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert all({"loss", "rewards/margins", "rewards/accuracies", "learning_rate"} <= set(r) for r in rows)
