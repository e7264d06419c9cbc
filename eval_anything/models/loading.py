"""How the `hf` backend loads weights: dtype, placement over devices (accelerate's big-model loading),
quantisation (bitsandbytes), remote code, attention implementation and a PEFT adapter, named as
lm-evaluation-harness and transformers name them."""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from eval_anything.errors import UsageError
from eval_anything.models.weights import ResolvedWeights
from eval_anything.registry import did_you_mean

AUTO = "auto"
PLACEMENTS = ("auto", "balanced", "balanced_low_0", "sequential")
"""accelerate's device_map strategies; each may spread a model over several devices."""
QUANTIZATIONS = ("4bit", "8bit")
QUANT_HINT = "pip install 'eval-anything[quant]' (bitsandbytes, on a CUDA GPU)"
PEFT_HINT = "pip install 'eval-anything[peft]'"


@dataclass(frozen=True)
class LoadingOptions:
    """The loading arguments of the `hf` backend (`--model-args`), as given."""

    dtype: str = AUTO
    """A torch dtype name (bfloat16, float16, float32, ...) or auto: float32 on the CPU; on a GPU the
    checkpoint's dtype (bfloat16 becomes float16 on a GPU without bfloat16; none declared: bfloat16 where
    supported, else float16)."""
    device_map: Any = None
    """accelerate's placement: auto, balanced, balanced_low_0, sequential, a device, or a JSON dict of
    module -> device; None: the whole model on `device`."""
    max_memory: Any = None
    """Memory per device for device_map: `0:20GiB,1:20GiB,cpu:64GiB` (gpu: every GPU) or a JSON dict."""
    trust_remote_code: bool = False
    """Run the modelling code the checkpoint ships (off unless asked; recorded with the run)."""
    attn_implementation: str | None = None
    """transformers' attention kernel (eager, sdpa, flash_attention_2, ...); None: transformers' choice."""
    quantization: str | None = None
    """4bit or 8bit through bitsandbytes; None: unquantised."""
    peft: str | None = None
    """A PEFT adapter (a directory or Hub id) loaded on the base model."""
    peft_base_check: bool = True
    """Refuse an adapter whose adapter_config.json names another base model."""

    @classmethod
    def pop_from(cls, args: dict[str, Any]) -> "LoadingOptions":
        """The options among `args`, removed from it."""
        names = [name for name in cls.__dataclass_fields__ if name in args]
        options = cls(**{name: args.pop(name) for name in names})
        options.check()
        return options

    def check(self) -> None:
        for name in ("trust_remote_code", "peft_base_check"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"model argument {name} must be true or false, not {getattr(self, name)!r}")
        if self.quantization is not None and self.quantization not in QUANTIZATIONS:
            raise UsageError(f"model argument quantization={self.quantization!r}: use one of {', '.join(QUANTIZATIONS)}")
        if self.max_memory is not None and self.device_map is None:
            raise UsageError("model argument max_memory applies to a device_map: add device_map=auto")
        if self.quantization is not None and importlib.util.find_spec("bitsandbytes") is None:
            raise UsageError(f"model argument quantization={self.quantization} needs bitsandbytes: {QUANT_HINT}")
        if self.peft is not None and importlib.util.find_spec("peft") is None:
            raise UsageError(f"model argument peft needs the peft library: {PEFT_HINT}")
        check_data_parallel(parse_device_map(self.device_map))

    @property
    def places_weights(self) -> bool:
        """accelerate (or bitsandbytes) puts the weights on devices: the model is not moved afterwards."""
        return self.device_map is not None or self.quantization is not None

    def from_pretrained_kwargs(self, torch: Any, dtype: Any) -> dict[str, Any]:
        """The keywords of `from_pretrained` these options ask for."""
        kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": self.trust_remote_code}
        if self.attn_implementation is not None:
            kwargs["attn_implementation"] = self.attn_implementation
        device_map = parse_device_map(self.device_map)
        if self.quantization is not None:
            from transformers import BitsAndBytesConfig

            bits = {"4bit": {"load_in_4bit": True, "bnb_4bit_compute_dtype": dtype}, "8bit": {"load_in_8bit": True}}
            kwargs["quantization_config"] = BitsAndBytesConfig(**bits[self.quantization])
            if device_map is None:  # bitsandbytes places the weights itself: on this rank's GPU, or spread
                device_map = {"": f"cuda:{local_rank()}"} if world_size() > 1 else AUTO
        if device_map is not None:
            kwargs["device_map"] = device_map
        if self.max_memory is not None:
            kwargs["max_memory"] = parse_max_memory(self.max_memory, torch.cuda.device_count())
        return kwargs

    def torch_dtype(self, torch: Any, device_type: str, declared: Any = None) -> Any:
        """The dtype to load in (see `dtype`); `declared` is the checkpoint's, read only on a GPU."""
        if self.dtype != AUTO:
            dtype = getattr(torch, str(self.dtype), None)
            if not isinstance(dtype, torch.dtype):
                raise UsageError(f"model argument dtype={self.dtype!r} is not a torch dtype "
                                 "(bfloat16, float16, float32 or auto)")
            return dtype
        if device_type != "cuda":
            return torch.float32  # what CPU kernels (and the packed linears) compute best, as before
        return auto_dtype(torch, declared, torch.cuda.is_bf16_supported())


HF_ARGUMENTS = ("batch_size", "batching", "device", "video_frames", "packed_linears", "revision",
                *LoadingOptions.__dataclass_fields__)
"""Every model argument the hf backend reads (lm-eval's spellings are translated before, lm_eval_names)."""


def check_hf_arguments(args: Mapping[str, Any]) -> None:
    """Refuse, before anything loads, an argument the hf backend does not read (with a suggestion) and
    loading options that cannot be met here (bitsandbytes or peft missing, a placement across devices
    in a data-parallel run)."""
    unknown = sorted(set(args) - set(HF_ARGUMENTS))
    if unknown:
        name = unknown[0]
        raise UsageError(f"unknown model argument {name!r} for the hf backend{did_you_mean(name, HF_ARGUMENTS)} "
                         f"(known: {', '.join(HF_ARGUMENTS)})")
    LoadingOptions.pop_from(dict(args))


def auto_dtype(torch: Any, declared: Any, bf16_supported: bool) -> Any:
    """dtype=auto on a GPU: the checkpoint's dtype, bfloat16 as float16 where the GPU lacks it."""
    if isinstance(declared, str):
        declared = getattr(torch, declared, None)
    half = torch.bfloat16 if bf16_supported else torch.float16
    if declared is None or declared == torch.bfloat16:
        return half
    return declared


def parse_device_map(value: Any) -> Any:
    """A device_map argument as accelerate takes it (a JSON dict is read); None stays None."""
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"model argument device_map is not a JSON object: {exc}") from None
        if not isinstance(parsed, dict):
            raise UsageError("model argument device_map: a JSON object of module -> device")
        return parsed
    if text in PLACEMENTS or text == "cpu" or text.startswith(("cuda", "mps")):
        return text
    raise UsageError(f"model argument device_map={text!r}: use {', '.join(PLACEMENTS)}, a device (cpu, cuda:0) "
                     'or a JSON object such as {"": 0}')


def spreads(device_map: Any) -> bool:
    """The placement may put parts of the model on different devices."""
    if isinstance(device_map, dict):
        return len({str(device) for device in device_map.values()}) > 1
    return device_map in PLACEMENTS


def check_data_parallel(device_map: Any) -> None:
    """Each data-parallel rank loads the whole model on its own GPU, so a placement over several devices
    cannot be combined with WORLD_SIZE > 1."""
    world = world_size()
    if world > 1 and spreads(device_map):
        raise UsageError(f"model argument device_map={device_map!r} spreads the model over several devices, but "
                         f"this is one of {world} data-parallel processes, each with a device of its own: run one "
                         "process (no accelerate launch/torchrun) to spread a model, or drop device_map")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE") or 1)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK") or 0)


def parse_max_memory(value: Any, gpus: int) -> dict[Any, str]:
    """`0:20GiB,1:20GiB,cpu:64GiB` (gpu: each visible GPU) or a JSON object -> accelerate's max_memory."""
    if isinstance(value, dict):
        pairs = list(value.items())
    elif str(value).strip().startswith("{"):
        try:
            pairs = list(json.loads(str(value)).items())
        except (ValueError, AttributeError) as exc:
            raise UsageError(f"model argument max_memory is not a JSON object: {exc}") from None
    else:
        pairs = []
        for item in filter(None, str(value).split(",")):
            device, sep, size = item.partition(":")
            if not sep or not size.strip():
                raise UsageError(f"model argument max_memory: {item!r} is not DEVICE:SIZE (e.g. 0:20GiB, cpu:64GiB)")
            pairs.append((device.strip(), size.strip()))
    budget: dict[Any, str] = {}
    for device, size in pairs:
        device = str(device)
        if device == "gpu":
            budget.update({index: str(size) for index in range(gpus)})
        else:
            budget[int(device) if device.isdigit() else device] = str(size)
    return budget


def adapter_base(adapter: ResolvedWeights) -> str | None:
    """The base model an adapter's adapter_config.json names."""
    config = adapter.path / "adapter_config.json"
    if not config.is_file():
        raise FileNotFoundError(f"PEFT adapter {adapter.path} has no adapter_config.json")
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path") or None
    except ValueError as exc:
        raise UsageError(f"{config}: not JSON ({exc})") from None


def same_model(named: str, reference: str, weights: ResolvedWeights) -> bool:
    """Whether `named` (an adapter's base) names the model given as `reference`, resolved to `weights`."""
    if named in (reference, weights.repo_id, str(weights.path)):
        return True
    path = Path(named).expanduser()
    return path.is_dir() and path.resolve() == weights.path.resolve()


def check_adapter_base(adapter: ResolvedWeights, reference: str, weights: ResolvedWeights, check: bool) -> None:
    base = adapter_base(adapter)
    if check and base is not None and not same_model(base, reference, weights):
        raise UsageError(f"PEFT adapter {adapter.path} was trained on {base}, not on {reference}: name that base "
                         "model, or add peft_base_check=false to load it on this one anyway")


def load_adapter(model: Any, adapter: ResolvedWeights) -> Any:
    """The base model with the adapter loaded on it (not merged: what was trained is what runs)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter.path)).eval()


def adapter_lineage(adapter: ResolvedWeights, given: str) -> dict[str, Any]:
    """What a run records of an adapter: as named, its base, and where it resolved to."""
    return {"peft": {"adapter": given, "base_model_name_or_path": adapter_base(adapter), **adapter.identity()}}
