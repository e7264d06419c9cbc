"""Faster float32 inference on CPU for the hf backend: pre-packed oneDNN linears, and a clean
OpenMP hand-off to the thread that runs continuous batching.

Packed linears: for the few rows a decoding step has, PyTorch's stock float32 linear (MKL sgemm)
repacks the whole weight matrix on every call, and that copy dominates. oneDNN can pack a weight
once, in the layout its kernels read; linears then cost 1.5-3x less here, and a decoding step of
SmolLM2-135M about a third less (median 91-97 ms against 135-144 ms on the 2-core test machine). This is what IPEX's `optimize` and
torch.compile's freezing do for CPU inference; here it is a plain module swap, no compilation.
The numbers differ from MKL's in the last bits (summation order), as any other kernel's would.

OpenMP hand-off: libgomp counts every pool thread of every thread that has run a parallel
region; once there are more than CPUs, all teams stop spinning between regions and sleep on
futexes instead, and a decoding step (hundreds of small parallel regions) slows by a third. The
main thread packs the weights (and may have run other work), then transformers' continuous
batching runs the model in a thread of its own, so the main thread's idle pool is freed first.
"""
from __future__ import annotations

import ctypes
import functools
import os
from typing import Any

import torch

OMP_PAUSE_SOFT = 1
"""omp_pause_resource_t: free the calling thread's OpenMP threads, keep its settings."""


def packing_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


class PackedLinear(torch.nn.Module):
    """An inference-only nn.Linear whose weight oneDNN has packed once (no gradients)."""

    def __init__(self, linear: torch.nn.Linear, rows_hint: int) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # a plain attribute, not a buffer: the packed tensor is opaque to state_dict and .to()
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows_hint)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def pack_linears(model: torch.nn.Module, rows_hint: int) -> int:
    """Swap every plain float32 CPU nn.Linear of `model` for a PackedLinear; returns how many
    (none where this torch build cannot pack). `rows_hint` (the batch size) picks oneDNN's layout;
    any number of rows works."""
    if not packing_available():
        return 0
    swapped = 0
    with torch.no_grad():  # not inference_mode, whose tensors autograd refuses to record
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is torch.nn.Linear and child.weight.dtype == torch.float32 \
                        and child.weight.device.type == "cpu":
                    setattr(parent, name, PackedLinear(child, max(1, rows_hint)))
                    swapped += 1
    return swapped


def release_openmp_threads() -> None:
    """Free the calling thread's idle OpenMP pool (see the module's docstring), so that the
    thread about to run the model keeps the CPUs to itself. A no-op where no OpenMP runtime
    with omp_pause_resource_all is loaded (or off Linux)."""
    runtime = _loaded_openmp()
    if runtime is not None:
        runtime.omp_pause_resource_all(OMP_PAUSE_SOFT)


@functools.cache
def _loaded_openmp() -> Any:
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "omp" in line.rsplit("/", 1)[-1]}
    except OSError:
        return None
    for path in sorted(paths):
        if os.path.basename(path).startswith(("libgomp", "libiomp", "libomp")):
            runtime = ctypes.CDLL(path)
            if hasattr(runtime, "omp_pause_resource_all"):
                return runtime
    return None
