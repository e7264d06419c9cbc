"""The vllm backend. Without vLLM or a CUDA GPU only its error and request mapping are tested; on a
GPU machine with vLLM installed it runs arith_mini on SmolLM2 and must agree with the hf backend."""
from __future__ import annotations

import importlib.util
import json

import pytest

from eval_anything.cli import main
from eval_anything.datamodel import GenerationConfig
from eval_anything.models import ModelSpec, load_model
from eval_anything.models.base import BackendError
from eval_anything.rundir import SampleLog


def _gpu_and_vllm() -> str | None:
    """Why the real-engine test cannot run here, or None when it can."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install 'eval-anything[vllm]', needs a CUDA GPU)"
    import torch

    if not torch.cuda.is_available():
        return "vLLM needs a CUDA GPU and this machine has none"
    return None


SKIP_REASON = _gpu_and_vllm()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_missing_vllm_says_how_to_install(tmp_path, capsys) -> None:
    with pytest.raises(BackendError, match=r"pip install 'eval-anything\[vllm\]' \(needs a CUDA GPU\)"):
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


@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
def test_vllm_agrees_with_hf_on_greedy_arith_mini(tmp_path, smollm2_dir) -> None:
    common = ["--tasks", "arith_mini", "--output-dir", str(tmp_path / "runs")]
    assert main(["run", "--model", f"hf:{smollm2_dir}", "--batch-size", "1", *common]) == 0
    assert main(["run", "--model", f"vllm:{smollm2_dir}", "--model-args",
                 "dtype=float32,gpu_memory_utilization=0.3,enforce_eager=true", *common]) == 0
    texts = {}
    for run_dir in (tmp_path / "runs").iterdir():
        backend = json.loads((run_dir / "manifest.json").read_text())["model"]["backend"]
        texts[backend] = {r["id"]: r["outputs"][0]["text"] for r in SampleLog(run_dir / "samples" / "arith_mini.jsonl")}
    same = sum(texts["hf"][i] == texts["vllm"][i] for i in texts["hf"])
    rate = same / len(texts["hf"])
    print(f"vllm/hf greedy agreement on arith_mini: {same}/{len(texts['hf'])} = {rate:.3f}")
    assert rate >= 0.8
