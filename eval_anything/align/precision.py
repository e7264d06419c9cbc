"""Numeric precision and memory settings of a training stage, resolved once from its config.

`dtype: auto` picks bf16 on a GPU that has it, else fp16 on a GPU (with loss scaling), else fp32
(CPU). Weights are loaded in bf16 for bf16 training (as align-anything's DeepSpeed bf16 runs do);
for fp16 they stay fp32 and autocast + a gradient scaler do the fp16 maths, because the scaler
cannot unscale fp16 gradients. `quantization: 4bit|8bit` loads the frozen base through
bitsandbytes for LoRA (QLoRA); it needs the `quantization` extra.
"""
from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from typing import Any

from eval_anything.errors import UsageError

DTYPES = ("auto", "bf16", "fp16", "fp32")
QUANTIZATIONS = ("none", "4bit", "8bit")


@dataclass(frozen=True)
class Precision:
    """What a stage trains with; recorded in its manifest."""

    requested: str
    dtype: str
    """The resolved training precision: bf16, fp16 or fp32."""
    gradient_checkpointing: bool
    quantization: str

    @property
    def load_dtype(self) -> Any:
        """The dtype the weights are loaded in."""
        import torch

        return torch.bfloat16 if self.dtype == "bf16" else torch.float32

    @property
    def mixed_precision(self) -> str:
        """accelerate's name for it: no, bf16 or fp16."""
        return "no" if self.dtype == "fp32" else self.dtype

    def trainer_flags(self, fields: set[str]) -> dict[str, Any]:
        """bf16/fp16 and activation checkpointing for a transformers/TRL TrainingArguments with `fields`
        (transformers 5 renamed gradient_checkpointing to activation_checkpointing)."""
        checkpointing = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
        return {"bf16": self.dtype == "bf16", "fp16": self.dtype == "fp16", checkpointing: self.gradient_checkpointing}

    def quantization_config(self) -> Any:
        """A BitsAndBytesConfig for the base weights, or None."""
        if self.quantization == "none":
            return None
        import torch
        import transformers

        if self.quantization == "4bit":
            compute = torch.bfloat16 if self.dtype == "bf16" else torch.float16 if self.dtype == "fp16" else torch.float32
            return transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                   bnb_4bit_compute_dtype=compute)
        return transformers.BitsAndBytesConfig(load_in_8bit=True)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def auto_dtype() -> str:
    import torch

    if not torch.cuda.is_available():
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def resolve(config: Any) -> Precision:
    """The Precision of a TrainConfig; ValueError naming the field for what cannot run here."""
    stage = getattr(config, "STAGE", "train")
    if config.dtype not in DTYPES:
        raise UsageError(f"{stage}: dtype must be one of {', '.join(DTYPES)}, got {config.dtype!r}")
    if config.quantization not in QUANTIZATIONS:
        raise UsageError(f"{stage}: quantization must be one of {', '.join(QUANTIZATIONS)}, got {config.quantization!r}")
    dtype = auto_dtype() if config.dtype == "auto" else config.dtype
    if dtype in ("bf16", "fp16"):
        import torch

        if not torch.cuda.is_available() and dtype == "fp16":
            raise UsageError(f"{stage}: dtype fp16 needs a GPU (loss scaling is CUDA-only); use auto or fp32 on CPU")
    if config.quantization != "none":
        if not config.lora:
            raise UsageError(f"{stage}: quantization {config.quantization} loads a frozen base, so it needs lora: true")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise UsageError(f"{stage}: quantization {config.quantization} needs bitsandbytes: "
                             "pip install 'eval-anything[quant]'")
    return Precision(config.dtype, dtype, bool(config.gradient_checkpointing), config.quantization)


def enable_checkpointing(model: Any) -> None:
    """Activation (gradient) checkpointing on a transformers model, under either of its names."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable({"use_reentrant": False})


def load_kwargs(precision: Precision) -> dict[str, Any]:
    """Extra from_pretrained arguments for quantised loading."""
    quantization = precision.quantization_config()
    return {"quantization_config": quantization} if quantization is not None else {}
