"""The `hf` backend: a local transformers model, loaded with its processor, generating through
continuous batching (continuous_batching.py) or static batches (static_batching.py)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from eval_anything.datamodel import Modality, ModelOutput, Request
from eval_anything.errors import UsageError
from eval_anything.models.base import ModelSpec, batch_size_value
from eval_anything.models.continuous_batching import CONTINUOUS, ContinuousBatching
from eval_anything.models.inputs import InputProcessor, input_modalities_of, load_processor
from eval_anything.models.loading import LoadingOptions, check_adapter_base, check_hf_arguments, load_adapter
from eval_anything.models.out_of_memory import release_cached_memory
from eval_anything.models.static_batching import STATIC

AUTO = "auto"
AUTO_START_BATCH = 32
"""batch_size auto: static batches start here and halve on out-of-memory; continuous batching keeps
this many requests in flight (its paged cache is sized for exactly that many)."""


class HFModel(ContinuousBatching):
    """`hf:DIR` or `hf:ORG/NAME[@REV]` — a transformers model (model, tokenizer or processor, config),
    a local folder or a Hub id resolved through the Hugging Face cache (weights.py).

    Arguments: batch_size (int or "auto", default auto: start at 32 and halve on out-of-memory),
    batching (continuous or static, default continuous), device (default auto: cuda when present,
    else cpu), video_frames (frames sampled from a video; default 8), packed_linears (default true:
    a float32 model on CPU runs its linears through oneDNN with weights packed once, see cpu_kernels;
    false keeps PyTorch's stock kernels, whose results differ in the last bits; never with peft or a
    device_map), revision, and the loading options of `loading.LoadingOptions` (dtype, default auto:
    float32 on the CPU, the checkpoint's on a GPU; device_map, max_memory, trust_remote_code,
    attn_implementation, quantization, peft, peft_base_check). Any other argument is an error
    (lm-eval's spellings are translated before, lm_eval_names.py). A processor with its own
    video support gets the frames as one video; otherwise they go in as images (video processors
    need torchvision, so that is the path exercised here).

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
        from eval_anything.models import with_weights

        spec = with_weights(spec)
        super().__init__(spec)
        import torch
        import transformers

        transformers.utils.logging.disable_progress_bar()
        args = dict(spec.args)
        path = spec.weights.path
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"hf model directory {path} has no config.json")
        self.video_frames = int(args.pop("video_frames", 8))
        self.batching = str(args.pop("batching", CONTINUOUS))
        if self.batching not in (CONTINUOUS, STATIC):
            raise UsageError(f"batching must be {CONTINUOUS} or {STATIC}, not {self.batching!r}")
        requested = args.pop("batch_size", AUTO)
        batch_size = batch_size_value(requested, f"model argument batch_size={requested!r} (also set by --batch-size)")
        self._auto_batch = batch_size == AUTO
        self._batch_size = AUTO_START_BATCH if self._auto_batch else batch_size
        device_name = _device_name(torch, args.pop("device", AUTO))
        packed = args.pop("packed_linears", True)
        if not isinstance(packed, bool):
            raise UsageError(f"packed_linears must be true or false, not {packed!r}")
        check_hf_arguments(args)
        self.options = LoadingOptions.pop_from(args)
        self.processor = load_processor(transformers, path, self.options.trust_remote_code)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.inputs = InputProcessor(self.processor, self.video_frames, spec.label)
        self.input_modalities = input_modalities_of(self.processor)
        kwargs = self._loading_kwargs(torch, transformers, device_name)
        model = load_generative_model(transformers, path, kwargs.pop("dtype"), kwargs, self.input_modalities)
        if spec.adapter is not None:
            check_adapter_base(spec.adapter, spec.reference, spec.weights, self.options.peft_base_check)
            model = load_adapter(model, spec.adapter)
        self.model = model.eval() if self.options.places_weights else model.to(device_name).eval()
        self.device = self.model.device if self.options.places_weights else torch.device(device_name)
        from eval_anything.models import cpu_kernels

        # PEFT's layers read their base linear's weight, which a packed linear does not keep
        packable = packed and not self.options.places_weights and spec.adapter is None
        self.packed_linears = cpu_kernels.pack_linears(self.model, self._batch_size) if packable else 0

    def _loading_kwargs(self, torch: Any, transformers: Any, device_name: str) -> dict[str, Any]:
        placed_on_gpu = self.options.places_weights and torch.cuda.is_available()
        device_type = "cuda" if placed_on_gpu else torch.device(device_name).type
        declared = None
        if self.options.dtype == AUTO and device_type == "cuda":
            config = transformers.AutoConfig.from_pretrained(self.spec.weights.path,
                                                             trust_remote_code=self.options.trust_remote_code)
            declared = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        return self.options.from_pretrained_kwargs(torch, self.options.torch_dtype(torch, device_type, declared))

    def describe(self) -> dict[str, Any]:
        described = {**super().describe(), "batch_size": AUTO if self._auto_batch else self._batch_size,
                     "batching": self.batching, "model_class": type(self.model).__name__,
                     "dtype": str(self.model.dtype).replace("torch.", ""), "packed_linears": self.packed_linears,
                     "trust_remote_code": self.options.trust_remote_code}
        if self.options.device_map is not None:  # where accelerate put each module (nothing when all on one CPU)
            placement = getattr(self.model, "hf_device_map", None)
            described["device_map"] = ({str(k): str(v) for k, v in placement.items()} if placement
                                       else self.options.device_map)
        for name in ("quantization", "attn_implementation"):
            if getattr(self.options, name) is not None:
                described[name] = getattr(self.options, name)
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
    _check_device(torch, requested)
    if requested == "cuda" and int(os.environ.get("WORLD_SIZE") or 1) > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK') or 0)}"  # data-parallel: this rank's GPU
    return requested


def _check_device(torch: Any, requested: Any) -> None:
    """A device this machine has, said before any weights load (torch would fail deep in `.to`)."""
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise UsageError(f"model argument device={requested!r} is not a torch device: use auto, cpu, cuda "
                         "or cuda:N") from None
    if device.type != "cuda":
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise UsageError(f"model argument device={requested}: torch {torch.__version__} sees no CUDA GPU here; "
                         "use device=cpu (or device=auto), or run on a machine with a GPU and a CUDA build of torch")
    if device.index is not None and device.index >= count:
        names = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        raise UsageError(f"model argument device={requested}: this machine's CUDA GPUs are {names}; "
                         "pick one of those, or device=cuda")


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
