"""lm-evaluation-harness's model arguments in our names, so an lm-eval command line ports by changing
its task names: `--model hf --model_args pretrained=ORG/NAME,revision=R,dtype=bfloat16,parallelize=True`.

The names both share (revision, dtype, device, batch_size, trust_remote_code, peft, attn_implementation)
pass as they are; the ones below are translated, or refused with what to write instead.
"""
from __future__ import annotations

from typing import Any, Mapping

from eval_anything.errors import UsageError

UNSUPPORTED = {
    "max_length": "the hf backend does not truncate prompts; vllm takes max_model_len",
    "max_batch_size": "batch_size=auto starts at 32 and halves on out-of-memory",
    "truncation": "prompts are never truncated",
    "backend": "the model class is chosen from the config (causal, image-text-to-text, multimodal)",
    "subfolder": "name the folder itself (a local directory)",
    "tokenizer": "the tokenizer or processor is the model folder's own",
    "use_fast_tokenizer": "the tokenizer is the model folder's own (AutoTokenizer)",
    "offload_folder": "device_map places the weights; disk offload is not offered",
    "autogptq": "load a GPTQ checkpoint whose config carries quantization_config",
    "gptqmodel": "load a GPTQ checkpoint whose config carries quantization_config",
    "delta": "merge the delta into a model folder first",
    "gguf_file": "convert the GGUF to a transformers folder first",
    "add_bos_token": "the chat template decides the special tokens",
}
"""lm-eval `hf` arguments with no counterpart here -> what to do instead."""


def from_lm_eval(backend: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """`args` with lm-eval's spellings turned into ours for the `hf` or `vllm` backend; a ValueError
    for an lm-eval argument we do not have."""
    args = dict(args)
    if args.get("batch_size") == "auto" and backend == "vllm":
        del args["batch_size"]  # vLLM's scheduler batches; our request window keeps its default
    if backend != "hf":
        if "max_length" in args:
            args.setdefault("max_model_len", args.pop("max_length"))
        return args
    for name, instead in UNSUPPORTED.items():
        if name in args:
            raise UsageError(f"model argument {name} (lm-eval) is not supported by the hf backend: {instead}")
    if str(args.get("batch_size", "")).startswith("auto:"):
        raise UsageError("model argument batch_size=auto:N (lm-eval's re-search schedule) is not supported: "
                         "batch_size=auto searches once, halving on out-of-memory")
    _placement(args)
    _bits(args)
    return args


def _placement(args: dict[str, Any]) -> None:
    parallelize = args.pop("parallelize", None)
    option = args.pop("device_map_option", None)
    if parallelize is True:
        _set_once(args, "device_map", option or "auto", "parallelize=True")
    per_gpu, cpu = args.pop("max_memory_per_gpu", None), args.pop("max_cpu_memory", None)
    if per_gpu is not None or cpu is not None:
        budget = {"gpu": _size(per_gpu), "cpu": _size(cpu)}
        _set_once(args, "max_memory", ",".join(f"{k}:{v}" for k, v in budget.items() if v), "max_memory_per_gpu")


def _size(value: Any) -> str | None:
    """lm-eval's memory sizes: a number of bytes or a string such as 20GiB."""
    return None if value is None else str(value)


def _bits(args: dict[str, Any]) -> None:
    for bits in ("4bit", "8bit"):
        if args.pop(f"load_in_{bits}", False) is True:
            _set_once(args, "quantization", bits, f"load_in_{bits}=True")


def _set_once(args: dict[str, Any], key: str, value: Any, source: str) -> None:
    if key in args and args[key] != value:
        raise UsageError(f"model arguments {source} and {key}={args[key]} disagree; keep one")
    args[key] = value
