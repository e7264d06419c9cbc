"""The hf backend's loading arguments: a PEFT adapter on its base model, accelerate's placement, dtype
auto, and the errors for what cannot be loaded (unknown arguments, bitsandbytes absent, placement
across devices in a data-parallel run)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval_anything.datamodel import GenerationConfig, Part, Request
from eval_anything.errors import UsageError
from eval_anything.models import ModelSpec, resolve_spec
from eval_anything.models.hf import HFModel

PROMPTS = ("Name a colour.", "What is 2 + 2?", "Say hello.")


def answers(model: HFModel) -> list[str]:
    requests = [Request(task="t", sample_id=str(i), variant=0, parts=(Part.of_text(p),),
                        generation=GenerationConfig(max_new_tokens=8))
                for i, p in enumerate(PROMPTS)]
    return [output.text for output in model.generate(requests)]


@pytest.fixture(scope="module")
def lora(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> tuple[Path, Path]:
    """A LoRA adapter trained on nothing (random A and B, so it changes the outputs) for the tiny Llama,
    saved as PEFT saves it, and the base with that adapter merged in."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("lora")
    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    peft_model.save_pretrained(root / "adapter")
    peft_model.merge_and_unload().save_pretrained(root / "merged")
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(root / "merged")
    return root / "adapter", root / "merged"


def test_a_peft_adapter_runs_on_its_base_as_the_merged_model_does(tiny_llama_dir: Path, lora: tuple[Path, Path]):
    from eval_anything.manifest import read_lineage

    adapter, merged = lora
    stock = {"packed_linears": False, "batching": "static"}  # the kernels the adapter runs on (no packing)
    base = HFModel(ModelSpec("hf", str(tiny_llama_dir), stock))
    assert (base.describe()["dtype"], base.describe()["trust_remote_code"]) == ("float32", False)  # auto on CPU
    with_adapter = HFModel(resolve_spec(f"hf:{tiny_llama_dir}", {"peft": str(adapter)}))  # all defaults
    as_merged = HFModel(ModelSpec("hf", str(merged), stock))
    assert (with_adapter.describe()["model_class"], with_adapter.describe()["packed_linears"]) == ("PeftModel", 0)
    assert answers(with_adapter) != answers(base)
    assert answers(with_adapter) == answers(as_merged)
    lineage = read_lineage(with_adapter.spec)
    assert lineage == {"peft": {"adapter": str(adapter), "base_model_name_or_path": str(tiny_llama_dir)}}
    with pytest.raises(ValueError, match=f"trained on {tiny_llama_dir}, not on {merged}: .* peft_base_check=false"):
        HFModel(ModelSpec("hf", str(merged), {**stock, "peft": str(adapter)}))
    assert HFModel(ModelSpec("hf", str(merged), {**stock, "peft": str(adapter), "peft_base_check": False}))


def test_accelerate_places_the_model_and_it_answers_the_same(tiny_llama_dir: Path):
    stock = {"packed_linears": False, "batching": "static"}
    placed = HFModel(ModelSpec("hf", str(tiny_llama_dir), {**stock, "device_map": "auto", "max_memory": "cpu:2GiB"}))
    plain = HFModel(ModelSpec("hf", str(tiny_llama_dir), stock))
    where = placed.describe()["device_map"]
    assert where == "auto" or set(where.values()) == {"cpu"}  # all on the one CPU: accelerate maps nothing
    assert answers(placed) == answers(plain)


def test_arguments_that_cannot_load_fail_before_any_weights(tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch):
    import importlib.util

    def spec(**args):
        return ModelSpec("hf", str(tiny_llama_dir), args)

    with pytest.raises(ValueError, match="unknown model argument 'dtyp' for the hf backend; did you mean 'dtype'"):
        HFModel(spec(dtyp="bfloat16"))
    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(ValueError, match=r"quantization=4bit needs bitsandbytes: pip install 'eval-anything\[quant\]'"):
            HFModel(spec(quantization="4bit"))
    with pytest.raises(ValueError, match="quantization='3bit': use one of 4bit, 8bit"):
        HFModel(spec(quantization="3bit"))
    with pytest.raises(ValueError, match="max_memory applies to a device_map"):
        HFModel(spec(max_memory="cpu:1GiB"))
    with pytest.raises(ValueError, match="dtype='bf15' is not a torch dtype"):
        HFModel(spec(dtype="bf15"))
    for size in (0, "8x"):
        with pytest.raises(UsageError, match=f"model argument batch_size={size!r} .*: use a whole number"):
            HFModel(spec(batch_size=size))
    with pytest.raises(UsageError, match="model argument device='gpu' is not a torch device: use auto, cpu, cuda"):
        HFModel(spec(device="gpu"))
    import torch

    if not torch.cuda.is_available():  # this machine as it is: no GPU
        for device in ("cuda", "cuda:0"):
            with pytest.raises(UsageError, match=f"model argument device={device}: torch .* sees no CUDA GPU here; "
                                                 "use device=cpu"):
                HFModel(spec(device=device))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as a one-GPU machine answers
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UsageError, match="device=cuda:1: this machine's CUDA GPUs are cuda:0; pick one"):
        HFModel(spec(device="cuda:1"))
    monkeypatch.undo()
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="device_map='auto' spreads the model over several devices, but this is "
                                         "one of 2 data-parallel processes"):
        HFModel(spec(device_map="auto"))
    from eval_anything.models.loading import check_data_parallel, parse_device_map

    check_data_parallel(parse_device_map(json.dumps({"": 0})))  # one device per rank is fine


def test_dtype_auto_on_a_gpu_follows_the_checkpoint():
    import torch

    from eval_anything.models.loading import LoadingOptions, auto_dtype, parse_max_memory

    assert auto_dtype(torch, "bfloat16", bf16_supported=True) == torch.bfloat16
    assert auto_dtype(torch, "bfloat16", bf16_supported=False) == torch.float16
    assert auto_dtype(torch, torch.float32, bf16_supported=True) == torch.float32
    assert auto_dtype(torch, None, bf16_supported=True) == torch.bfloat16
    assert LoadingOptions().torch_dtype(torch, "cpu", "bfloat16") == torch.float32
    assert LoadingOptions(dtype="float16").torch_dtype(torch, "cpu") == torch.float16
    assert parse_max_memory("gpu:20GiB,cpu:64GiB", gpus=2) == {0: "20GiB", 1: "20GiB", "cpu": "64GiB"}
    assert parse_max_memory('{"0": "10GiB"}', gpus=1) == {0: "10GiB"}
