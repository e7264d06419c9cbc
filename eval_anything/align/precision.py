"""Numeric precision and memory settings of a training stage, resolved once from its config.

`dtype: auto` picks bf16 on a GPU that has it, else fp16 on a GPU (with loss scaling), else fp32
(CPU). bf16 is mixed precision: the weights being trained (policy, critic, a reward model in
training, LoRA adapters) stay fp32 and the maths runs under bf16 autocast (TRL's `bf16=True`,
accelerate's `mixed_precision="bf16"`), because an optimizer updating bf16 weights (an 8-bit
mantissa) loses every update smaller than 1/256 of the weight. Under DeepSpeed they load in bf16,
as DeepSpeed's bf16 keeps its own fp32 master copy; `master_weights: bf16` loads them in bf16 too
(half the memory, small updates lost). Frozen models (references, a reward model that scores, a
LoRA base) load in bf16 under bf16. For fp16 everything stays fp32 and autocast + a gradient scaler
do the fp16 maths, because the scaler cannot unscale fp16 gradients. `quantization: 4bit|8bit`
loads the frozen base through bitsandbytes for LoRA (QLoRA); it needs the `quantization` extra.
"""
from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from typing import Any

from eval_anything.errors import UsageError

DTYPES = ("auto", "bf16", "fp16", "fp32")
QUANTIZATIONS = ("none", "4bit", "8bit")
MASTER_WEIGHTS = ("fp32", "bf16")


@dataclass(frozen=True)
class Precision:
    """What a stage trains with; recorded in its manifest."""

    requested: str
    dtype: str
    """The resolved training precision: bf16, fp16 or fp32."""
    gradient_checkpointing: bool
    quantization: str
    master_weights: str
    """The dtype the optimizer updates: fp32, or bf16 (`master_weights: bf16` under bf16 training);
    under DeepSpeed, the dtype of DeepSpeed's own master copy (fp32)."""
    deepspeed: bool
    """DeepSpeed runs the stage (a `deepspeed` config, or `accelerate launch --use_deepspeed`)."""

    @property
    def trained_dtype(self) -> Any:
        """The dtype the weights being trained are loaded in."""
        import torch

        bf16_weights = self.dtype == "bf16" and (self.deepspeed or self.master_weights == "bf16")
        return torch.bfloat16 if bf16_weights else torch.float32

    @property
    def frozen_dtype(self) -> Any:
        """The dtype of frozen models: references, a reward model that scores, a LoRA base."""
        import torch

        return torch.bfloat16 if self.dtype == "bf16" else torch.float32

    def load_dtype(self, frozen: bool = False) -> Any:
        return self.frozen_dtype if frozen else self.trained_dtype

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
    master = getattr(config, "master_weights", "fp32")
    if master not in MASTER_WEIGHTS:
        raise UsageError(f"{stage}: master_weights must be one of {', '.join(MASTER_WEIGHTS)}, got {master!r}")
    deepspeed = uses_deepspeed(config)
    if deepspeed and master != "fp32":
        raise UsageError(f"{stage}: master_weights {master} cannot be combined with DeepSpeed, which keeps its own "
                         "fp32 master copy; drop master_weights or the DeepSpeed config")
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
    master = master if dtype == "bf16" and not deepspeed else "fp32"
    return Precision(config.dtype, dtype, bool(config.gradient_checkpointing), config.quantization, master, deepspeed)


def uses_deepspeed(config: Any) -> bool:
    """A `deepspeed` config, or `accelerate launch --use_deepspeed` (which says so through the environment)."""
    from accelerate.utils import parse_flag_from_env

    return bool(getattr(config, "deepspeed", None)) or parse_flag_from_env("ACCELERATE_USE_DEEPSPEED")


def enable_checkpointing(model: Any) -> None:
    """Activation (gradient) checkpointing on a transformers model, under either of its names."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable({"use_reentrant": False})


def cast_trained(model: Any, precision: Precision) -> None:
    """The trainable parameters (LoRA adapters, new heads) in the trained dtype: PEFT makes adapters
    fp32 and TRL makes QLoRA's bf16, whatever the master weights. DeepSpeed casts for itself, and its
    ZeRO-3 may have partitioned them already."""
    if precision.deepspeed:
        return
    dtype = precision.trained_dtype
    for param in model.parameters():
        if param.requires_grad and param.dtype != dtype:
            param.data = param.data.to(dtype)


def load_kwargs(precision: Precision) -> dict[str, Any]:
    """Extra from_pretrained arguments for quantised loading."""
    quantization = precision.quantization_config()
    return {"quantization_config": quantization} if quantization is not None else {}
