"""The `hf` backend: a local transformers model, loaded with its processor, generating through
continuous batching (continuous_batching.py) or static batches (static_batching.py)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from eval_anything.datamodel import Modality, ModelOutput, Request
from eval_anything.errors import UsageError
from eval_anything.models.base import ModelSpec
from eval_anything.models.continuous_batching import CONTINUOUS, ContinuousBatching
from eval_anything.models.inputs import InputProcessor, input_modalities_of, load_processor
from eval_anything.models.out_of_memory import release_cached_memory
from eval_anything.models.static_batching import STATIC

AUTO = "auto"
AUTO_START_BATCH = 32
"""batch_size auto: static batches start here and halve on out-of-memory; continuous batching keeps
this many requests in flight (its paged cache is sized for exactly that many)."""


class HFModel(ContinuousBatching):
    """`hf:DIR` — a transformers model directory (model, tokenizer or processor, config).

    Arguments: batch_size (int or "auto", default auto: start at 32 and halve on out-of-memory),
    batching (continuous or static, default continuous), dtype (default float32; "auto" keeps the
    checkpoint's), device (default cpu; "auto" picks cuda when present), video_frames (frames
    sampled from a video; default 8), packed_linears (default true: a float32 model on CPU runs its
    linears through oneDNN with weights packed once, see cpu_kernels; false keeps PyTorch's stock
    kernels, whose results differ in the last bits). A processor with its own video support gets
    the frames as one video; otherwise they go in as images (video processors need torchvision, so
    that is the path exercised here).

    batching=continuous: greedy text-only requests go through transformers' continuous batching
    (`init_continuous_batching`, a paged KV cache sized for each window of requests the runner
    hands `stream`), at most batch_size in flight (auto: 32), a finished request's slot refilled at
    once. Requests with media (the manager takes token ids only) and sampled requests (its random
    draws depend on which requests happen to share a step, so a seeded repeat would not reproduce)
    go in static batches, as everything does with batching=static, and so does everything after
    transformers refuses to build a manager for the model (describe() records why). Greedy answers
    are the same either way; describe() counts the requests each batching generated.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        import torch
        import transformers

        transformers.utils.logging.disable_progress_bar()
        args = dict(spec.args)
        path = Path(spec.reference)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"hf model directory {path} has no config.json")
        self.video_frames = int(args.pop("video_frames", 8))
        self.batching = str(args.pop("batching", CONTINUOUS))
        if self.batching not in (CONTINUOUS, STATIC):
            raise UsageError(f"batching must be {CONTINUOUS} or {STATIC}, not {self.batching!r}")
        requested = args.pop("batch_size", AUTO)
        self._auto_batch = requested == AUTO
        self._batch_size = AUTO_START_BATCH if self._auto_batch else int(requested)
        self.device = torch.device(_device_name(torch, args.pop("device", "cpu")))
        dtype_name = str(args.pop("dtype", "float32"))
        dtype = dtype_name if dtype_name == AUTO else getattr(torch, dtype_name)
        self.processor = load_processor(transformers, path)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.inputs = InputProcessor(self.processor, self.video_frames, spec.label)
        self.input_modalities = input_modalities_of(self.processor)
        packed = args.pop("packed_linears", True)
        if not isinstance(packed, bool):
            raise UsageError(f"packed_linears must be true or false, not {packed!r}")
        model = load_generative_model(transformers, path, dtype, args, self.input_modalities)
        self.model = model.to(self.device).eval()
        from eval_anything.models import cpu_kernels

        self.packed_linears = cpu_kernels.pack_linears(self.model, self._batch_size) if packed else 0

    def describe(self) -> dict[str, Any]:
        described = {**super().describe(), "batch_size": AUTO if self._auto_batch else self._batch_size,
                     "batching": self.batching, "model_class": type(self.model).__name__,
                     "dtype": str(self.model.dtype).replace("torch.", ""), "packed_linears": self.packed_linears}
        if self.requests_by_batching:
            described["requests_by_batching"] = dict(sorted(self.requests_by_batching.items()))
        if self.continuous_unsupported:
            described["continuous_unsupported"] = self.continuous_unsupported
        return described

    def stream(self, requests: Iterable[Request]) -> Iterator[tuple[Request, ModelOutput]]:
        """Outputs as they complete, from the engine `batching` names."""
        engine = self._static_stream if self.batching == STATIC else self._continuous_stream
        yield from engine(requests)

    def close(self) -> None:
        del self.model
        release_cached_memory()


def _device_name(torch: Any, requested: str) -> str:
    if requested == AUTO:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and int(os.environ.get("WORLD_SIZE") or 1) > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK') or 0)}"  # data-parallel: this rank's GPU
    return requested


def load_generative_model(transformers: Any, path: Path, dtype: Any, args: dict[str, Any],
                          modalities: frozenset[Modality]) -> Any:
    """The first Auto class that takes the config: image models are image-text-to-text (LLaVA),
    audio models need AutoModelForMultimodalLM (Qwen2-Audio), text models are causal LMs."""
    if Modality.AUDIO in modalities:
        classes = ("AutoModelForMultimodalLM", "AutoModelForImageTextToText", "AutoModelForCausalLM")
    elif Modality.IMAGE in modalities:
        classes = ("AutoModelForImageTextToText", "AutoModelForMultimodalLM", "AutoModelForCausalLM")
    else:
        classes = ("AutoModelForCausalLM", "AutoModelForImageTextToText", "AutoModelForMultimodalLM")
    errors = []
    for name in classes:
        auto = getattr(transformers, name, None)
        if auto is None:
            continue
        try:
            return auto.from_pretrained(path, dtype=dtype, **args)
        except ValueError as exc:  # "Unrecognized configuration class" for this auto class
            errors.append(f"{name}: {exc}".splitlines()[0])
    raise UsageError(f"no generative model class loads {path}:\n  " + "\n  ".join(errors))
