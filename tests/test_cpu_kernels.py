"""The hf backend's CPU kernels: oneDNN-packed linears (same results as nn.Linear up to float
rounding, the same greedy answers on the embedded model) and the OpenMP hand-off to the
continuous-batching thread."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from eval_anything.datamodel import GenerationConfig, Part, Request
from eval_anything.models.base import ModelSpec
from eval_anything.models.cpu_kernels import PackedLinear, pack_linears, packing_available
from eval_anything.models.hf import HFModel

needs_packing = pytest.mark.skipif(not packing_available(), reason="this torch build has no oneDNN linear packing")


@needs_packing
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(8, 96), (1, 5, 96), (3, 7, 96)])
def test_packed_linear_matches_nn_linear(bias: bool, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 200, bias=bias)
    x = torch.randn(*shape)
    with torch.inference_mode():
        expected, got = linear(x), PackedLinear(linear, rows_hint=8)(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@needs_packing
def test_pack_linears_swaps_only_plain_float32_linears() -> None:
    class Custom(torch.nn.Linear):
        pass

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Sequential(torch.nn.Linear(4, 4)),
                                torch.nn.Linear(4, 4).to(torch.bfloat16), Custom(4, 4))
    assert pack_linears(model, rows_hint=8) == 2
    assert [type(m).__name__ for m in model] == ["PackedLinear", "ReLU", "Sequential", "Linear", "Custom"]
    assert isinstance(model[2][0], PackedLinear)


@needs_packing
def test_hf_backend_packs_by_default_and_answers_as_the_stock_kernels_do(smollm2_dir: Path) -> None:
    requests = [Request("t", str(i), 0, (Part.of_text(q),), GenerationConfig(max_new_tokens=8, stop=("\n",)))
                for i, q in enumerate(("What is 7 * 6?", "Name a colour.", "What is 40 - 13?"))]
    packed = HFModel(ModelSpec("hf", str(smollm2_dir), {"batch_size": 3}))
    stock = HFModel(ModelSpec("hf", str(smollm2_dir), {"batch_size": 3, "packed_linears": False}))
    assert packed.describe()["packed_linears"] == 211  # 30 layers x 7 projections + the LM head
    assert stock.describe()["packed_linears"] == 0
    fast, slow = packed.generate(requests), stock.generate(requests)
    assert all(o.error is None and o.text for o in fast)
    assert [o.text for o in fast] == [o.text for o in slow]


def test_packed_linears_must_be_a_boolean(smollm2_dir: Path) -> None:
    with pytest.raises(ValueError, match="packed_linears must be true or false, not 'yes'"):
        HFModel(ModelSpec("hf", str(smollm2_dir), {"packed_linears": "yes"}))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through Linux's /proc")
def test_release_openmp_threads_frees_the_callers_idle_pool() -> None:
    """In a fresh process with 2 OpenMP threads: a parallel op leaves the main thread a pool
    worker; releasing it ends that thread, and the next parallel op works and starts it again."""
    script = textwrap.dedent("""
        import os, torch
        from eval_anything.models.cpu_kernels import release_openmp_threads
        threads = lambda: len(os.listdir("/proc/self/task"))
        torch.set_num_threads(2)
        a = torch.randn(512, 512)
        (a @ a).sum()
        with_pool = threads()
        release_openmp_threads()
        released = threads()
        assert torch.equal(a @ a, a @ a)
        print(with_pool, released, threads())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr
    with_pool, released, again = map(int, result.stdout.split())
    assert released == with_pool - 1 and again == with_pool
