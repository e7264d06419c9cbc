"""Local transformers models: chat templates, length-sorted batches, multimodal processors."""
from __future__ import annotations

import itertools
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from eval_anything.datamodel import Modality, ModelOutput, Part, Request, Usage
from eval_anything.media import MediaError, load_audio, load_image, load_video_frames
from eval_anything.models.base import Model, ModelSpec, cut_at_stop

AUTO = "auto"
AUTO_START_BATCH = 32
"""batch_size auto: static batches start here and halve on out-of-memory; continuous batching keeps
this many requests in flight (its paged cache is sized for exactly that many, see _paged_cache)."""
CONTINUOUS, STATIC = "continuous", "static"
PAGE_SIZE = 32
"""Tokens per paged-cache page (transformers' default, 256, wastes most of a page on short answers)."""
MAX_PREFILL_TOKENS = 4096
"""Most prompt tokens prefilled in one step (unless one prompt is longer)."""
PART_LOADERS = {"image_processor": "AutoImageProcessor", "feature_extractor": "AutoFeatureExtractor",
                "tokenizer": "AutoTokenizer"}
"""Processor part -> the Auto class that loads it from a model folder."""


@dataclass
class _Prepared:
    """A request turned into chat content and decoded media, ready for the processor."""

    content: list[dict[str, Any]]
    images: list[Any] = field(default_factory=list)
    videos: list[Any] = field(default_factory=list)
    audios: list[Any] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


class InputProcessor:
    """Request parts -> chat content and decoded media -> rendered prompt -> processor tensors.

    The one input path for local transformers models: `HFModel` uses it to evaluate and
    `eval_anything.align` uses it to build training examples, so both see the same prompts,
    media tokens, frame sampling and audio resampling.
    """

    def __init__(self, processor: Any, video_frames: int = 8, label: str = "model") -> None:
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.video_frames = video_frames
        self.label = label

    def prepare(self, parts: Sequence[Part]) -> _Prepared:
        prepared = _Prepared(content=[])
        for part in parts:
            self._add_part(prepared, part)
        return prepared

    def _add_part(self, prepared: _Prepared, part: Part) -> None:
        if part.modality is Modality.TEXT:
            if not part.text:
                return
            last = prepared.content[-1] if prepared.content else None
            if last is not None and last["type"] == "text":
                last["text"] += "\n" + part.text  # adjacent text parts joined as in Request.prompt_text
            else:
                prepared.content.append({"type": "text", "text": part.text})
        elif part.modality is Modality.IMAGE:
            prepared.images.append(load_image(part))
            prepared.content.append({"type": "image"})
        elif part.modality is Modality.VIDEO:
            frames = load_video_frames(part, self.video_frames)
            if self.native_video:
                import numpy as np

                prepared.videos.append(np.stack([np.asarray(frame) for frame in frames]))
                prepared.content.append({"type": "video"})
                prepared.notes["video_native_frames"] = prepared.notes.get("video_native_frames", 0) + len(frames)
            else:  # no video processor (they need torchvision): the clip goes in as sampled frames
                prepared.images.extend(frames)
                prepared.content.extend({"type": "image"} for _ in frames)
                prepared.notes["video_as_frames"] = prepared.notes.get("video_as_frames", 0) + len(frames)
        elif part.modality is Modality.AUDIO:
            samples, _ = load_audio(part, self.audio_rate())
            prepared.audios.append(samples)
            prepared.content.append({"type": "audio", "audio": samples})

    def audio_rate(self) -> int:
        extractor = getattr(self.processor, "feature_extractor", None)
        return int(getattr(extractor, "sampling_rate", 16000))

    @property
    def native_video(self) -> bool:
        return getattr(self.processor, "video_processor", None) is not None

    @property
    def text_only(self) -> bool:
        return self.processor is self.tokenizer

    def render(self, prepared: _Prepared, prompt_text: str, system: str | None = None) -> str:
        """The chat-template prompt, ending where the assistant's answer starts."""
        messages: list[dict[str, Any]] = []
        if self.text_only:
            if system:
                messages.append({"role": "system", "content": system})
            messages.append({"role": "user", "content": prompt_text})
        else:
            # multimodal templates expect list content; many iterate it even for the system turn
            if system:
                messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
            messages.append({"role": "user", "content": prepared.content})
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if prepared.images or prepared.videos or prepared.audios:
            raise ValueError(f"{self.label} has no chat template to place media tokens in the prompt")
        return "\n".join(filter(None, [system, prompt_text]))

    def encode(self, texts: list[str], prepared: list[_Prepared], padding_side: str = "left") -> Any:
        # The rendered template already holds the special tokens; as transformers' own
        # apply_chat_template does, add none when it starts with BOS (and never for bare tokenizers).
        bos = self.tokenizer.bos_token
        add_special = not self.text_only and not (bos and all(t.startswith(bos) for t in texts))
        common = {"return_tensors": "pt", "padding": True, "padding_side": padding_side, "add_special_tokens": add_special}
        if self.text_only:
            return self.tokenizer(texts, **common)
        kwargs: dict[str, Any] = {"text": texts, **common}
        images = [image for p in prepared for image in p.images]
        audios = [audio for p in prepared for audio in p.audios]
        videos = [video for p in prepared for video in p.videos]
        if images:
            kwargs["images"] = images
        if videos:
            kwargs["videos"] = videos
        if audios:
            # Qwen2-Audio style processors pad features to 30 s themselves and count audio tokens
            # from the feature mask; the samples were resampled to this rate on load.
            kwargs["audio"] = audios
            kwargs["sampling_rate"] = self.audio_rate()
        return self.processor(**kwargs)


class HFModel(Model):
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
        self._torch = torch
        args = dict(spec.args)
        path = Path(spec.reference)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"hf model directory {path} has no config.json")
        self.video_frames = int(args.pop("video_frames", 8))
        self.batching = str(args.pop("batching", CONTINUOUS))
        if self.batching not in (CONTINUOUS, STATIC):
            raise ValueError(f"batching must be {CONTINUOUS} or {STATIC}, not {self.batching!r}")
        self.requests_by_batching: Counter[str] = Counter()
        self.continuous_unsupported: str | None = None
        self._end_tokens: dict[tuple[str, ...], list[int]] = {}
        self._vocabulary: list[str] | None = None
        requested = args.pop("batch_size", AUTO)
        self._auto_batch = requested == AUTO
        self._batch_size = AUTO_START_BATCH if self._auto_batch else int(requested)
        device = args.pop("device", "cpu")
        if device == AUTO:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and int(os.environ.get("WORLD_SIZE") or 1) > 1:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK') or 0)}"  # data-parallel: this rank's GPU
        self.device = torch.device(device)
        dtype_name = str(args.pop("dtype", "float32"))
        dtype = dtype_name if dtype_name == AUTO else getattr(torch, dtype_name)
        self.processor = _load_processor(transformers, path)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.inputs = InputProcessor(self.processor, self.video_frames, spec.label)
        self.input_modalities = _input_modalities(self.processor)
        packed = args.pop("packed_linears", True)
        if not isinstance(packed, bool):
            raise ValueError(f"packed_linears must be true or false, not {packed!r}")
        self.model = _load_model(transformers, path, dtype, args, self.input_modalities).to(self.device).eval()
        from eval_anything.models import cpu_kernels

        self.packed_linears = cpu_kernels.pack_linears(self.model, self._batch_size) if packed else 0

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def describe(self) -> dict[str, Any]:
        described = {**super().describe(), "batch_size": AUTO if self._auto_batch else self._batch_size,
                     "batching": self.batching, "model_class": type(self.model).__name__,
                     "dtype": str(self.model.dtype).replace("torch.", ""), "packed_linears": self.packed_linears}
        if self.requests_by_batching:
            described["requests_by_batching"] = dict(sorted(self.requests_by_batching.items()))
        if self.continuous_unsupported:
            described["continuous_unsupported"] = self.continuous_unsupported
        return described

    # ------------------------------------------------------------------ continuous batching

    def stream(self, requests: Iterable[Request]) -> Iterator[tuple[Request, ModelOutput]]:
        """Greedy text-only requests through one continuous-batching manager per window (the
        runner's whole window, so freed slots are refilled across it), the rest in static batches."""
        if self.batching == STATIC:
            yield from self._static_stream(requests)
            return
        window = max(256, 16 * self._batch_size)  # as large as the runner's, so one window is one manager
        iterator = iter(requests)
        while chunk := list(itertools.islice(iterator, window)):
            suits = [self._continuous_suits(r) for r in chunk]  # decided once: a fallback changes the answer
            yield from self._continuous_stream([r for r, fits in zip(chunk, suits) if fits])
            yield from self._static_stream([r for r, fits in zip(chunk, suits) if not fits])

    def _static_stream(self, requests: Iterable[Request]) -> Iterator[tuple[Request, ModelOutput]]:
        for request, output in super().stream(requests):
            self.requests_by_batching[STATIC] += 1
            yield request, output

    def _continuous_suits(self, request: Request) -> bool:
        return (self.continuous_unsupported is None and request.generation.greedy
                and request.modalities <= {Modality.TEXT})

    def _continuous_stream(self, requests: list[Request]) -> Iterator[tuple[Request, ModelOutput]]:
        if not requests:
            return
        started = time.perf_counter()
        inputs = [self._token_ids(r) for r in requests]
        try:
            manager = self._start_manager(inputs, max(r.generation.max_new_tokens for r in requests))
        except (ValueError, TypeError, AttributeError, NotImplementedError) as exc:
            # a model transformers cannot batch continuously (e.g. its attention implementation)
            self.continuous_unsupported = f"{type(exc).__name__}: {exc}".splitlines()[0]
            yield from self._static_stream(requests)
            return
        out_of_memory: list[Request] = []
        try:
            for index, (request, ids) in enumerate(zip(requests, inputs)):
                manager.add_request(ids, request_id=str(index), max_new_tokens=request.generation.max_new_tokens,
                                    eos_token_id=self._stop_tokens(request.generation.stop))
            for index, output in self._collect(manager, inputs, requests, started):
                if self._auto_batch and self._batch_size > 1 and _says_out_of_memory(output.error or ""):
                    out_of_memory.append(requests[index])
                    continue
                self.generated += 1
                self.requests_by_batching[CONTINUOUS] += 1
                yield requests[index], output
        finally:
            manager.stop(block=True, timeout=10, hard_stop=True)  # nothing left to flush unless abandoned
            manager.destroy()
        if out_of_memory:  # batch_size auto: fewer in flight, as static batches halve
            self._batch_size = max(1, min(self._batch_size, len(requests)) // 2)
            self._release_memory()
            yield from self._continuous_stream(out_of_memory)

    def _start_manager(self, inputs: list[list[int]], max_new_tokens: int) -> Any:
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=self._eos(),
                                  pad_token_id=self.tokenizer.pad_token_id)
        cache = ContinuousBatchingConfig(**_paged_cache(inputs, max_new_tokens, min(self._batch_size, len(inputs))))
        manager = self.model.init_continuous_batching(generation_config=config, continuous_batching_config=cache)
        if self.device.type == "cpu":
            from eval_anything.models.cpu_kernels import release_openmp_threads

            release_openmp_threads()  # the generation thread gets the CPUs' OpenMP threads
        with self._torch.inference_mode():  # the generation thread takes the mode it was started in
            manager.start()
        return manager

    def _collect(self, manager: Any, inputs: list[list[int]], requests: list[Request], started: float
                 ) -> Iterator[tuple[int, ModelOutput]]:
        """(index, output) as requests finish; each latency is the time since the previous one
        finished, so that latencies add up to the wall time as in static batches. A request the
        manager failed or lost (it logs failures instead of raising) becomes a failed output."""
        pending = set(range(len(requests)))
        last = started
        while pending:
            result = manager.get_result(timeout=1)
            if result is None:
                if manager.is_running():
                    continue
                break
            index = int(result.request_id)
            if index not in pending or not result.is_finished():
                continue
            pending.discard(index)
            now = time.perf_counter()
            yield index, self._continuous_output(result, requests[index], len(inputs[index]), now - last)
            last = now
        for index in sorted(pending):
            yield index, ModelOutput.failed(f"{self.spec.label}: continuous batching returned no result "
                                            "(its generation loop stopped)")

    def _continuous_output(self, result: Any, request: Request, n_in: int, latency: float) -> ModelOutput:
        if result.error is not None:
            return ModelOutput.failed(f"{self.spec.label}: continuous batching failed: {result.error}")
        return self._output(list(result.generated_tokens), request.generation.stop, n_in, latency, {})

    def _token_ids(self, request: Request) -> list[int]:
        """The prompt's ids exactly as the static path encodes them (see InputProcessor.encode)."""
        text = self._render(request, self._prepare(request))
        bos = self.tokenizer.bos_token
        add_special = not self.inputs.text_only and not (bos and text.startswith(bos))
        return self.tokenizer(text, add_special_tokens=add_special).input_ids

    def _eos(self) -> list[int]:
        ends = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id, *_eos_ids(self.model)}
        return sorted(e for e in ends if e is not None)

    def _stop_tokens(self, stops: tuple[str, ...]) -> list[int]:
        """EOS and every token whose text contains a stop string: the manager has no stop strings.
        A stop spanning tokens is only cut afterwards. Cached: it decodes the whole vocabulary."""
        if stops not in self._end_tokens:
            if self._vocabulary is None:
                self._vocabulary = _token_texts(self.tokenizer)
            found = {i for i, text in enumerate(self._vocabulary) if any(s and s in text for s in stops)}
            self._end_tokens[stops] = sorted(found.union(self._eos()))
        return self._end_tokens[stops]

    def generate(self, requests: Sequence[Request]) -> list[ModelOutput]:
        outputs: list[ModelOutput | None] = [None] * len(requests)
        groups: dict[Any, list[tuple[int, _Prepared]]] = {}
        for index, request in enumerate(requests):
            unsupported = request.modalities - self.input_modalities
            if unsupported:
                names = ", ".join(sorted(m.value for m in unsupported))
                outputs[index] = ModelOutput.failed(f"{self.spec.label} does not accept {names} input")
                continue
            try:
                prepared = self._prepare(request)
            except MediaError as exc:
                outputs[index] = ModelOutput.failed(str(exc))
                continue
            # one generate() call takes one generation config, so batch only requests that share it
            groups.setdefault(request.generation, []).append((index, prepared))
        for ready in groups.values():
            ready.sort(key=lambda item: -len(requests[item[0]].prompt_text))
            start = 0
            while start < len(ready):
                chunk = ready[start : start + self._batch_size]
                try:
                    results = self._generate_batch([requests[i] for i, _ in chunk], [p for _, p in chunk])
                except Exception as exc:
                    if not (_is_out_of_memory(exc) and self._auto_batch and len(chunk) > 1):
                        raise
                    # halve what actually failed, not a start size larger than the chunk
                    self._batch_size = max(1, len(chunk) // 2)
                    self._release_memory()
                    continue
                for (index, _), output in zip(chunk, results):
                    outputs[index] = output
                start += len(chunk)
        missing = [i for i, o in enumerate(outputs) if o is None]
        if missing:
            raise RuntimeError(f"{self.spec.label} produced no output for requests {missing}")
        return outputs  # type: ignore[return-value]

    def _release_memory(self) -> None:
        if self._torch.cuda.is_initialized():  # never start CUDA just to empty its cache
            self._torch.cuda.empty_cache()

    def _prepare(self, request: Request) -> _Prepared:
        return self.inputs.prepare(request.parts)

    def _render(self, request: Request, prepared: _Prepared) -> str:
        return self.inputs.render(prepared, request.prompt_text, request.system)

    def _encode(self, texts: list[str], prepared: list[_Prepared]) -> Any:
        return self.inputs.encode(texts, prepared)

    def _generate_batch(self, requests: list[Request], prepared: list[_Prepared]) -> list[ModelOutput]:
        torch = self._torch
        generation = requests[0].generation
        started = time.perf_counter()
        texts = [self._render(r, p) for r, p in zip(requests, prepared)]
        encoded = self._encode(texts, prepared)
        # pixel_values, input_features...: float inputs in the model's dtype; ids and masks untouched
        inputs = {k: (v.to(self.device, self.model.dtype) if v.is_floating_point() else v.to(self.device))
                  if isinstance(v, torch.Tensor) else v for k, v in encoded.items()}
        torch.manual_seed(generation.seed)
        sampling = {"do_sample": False} if generation.greedy else {
            "do_sample": True, "temperature": generation.temperature, "top_p": generation.top_p}
        stop = {"stop_strings": list(generation.stop), "tokenizer": self.tokenizer} if generation.stop else {}
        with torch.inference_mode():
            sequences = self.model.generate(**inputs, max_new_tokens=generation.max_new_tokens,
                                            pad_token_id=self.tokenizer.pad_token_id, **sampling, **stop)
        elapsed = (time.perf_counter() - started) / len(requests)
        prompt_length = inputs["input_ids"].shape[1]
        new_tokens = sequences[:, prompt_length:]
        input_counts = inputs["attention_mask"].sum(dim=1).tolist()
        return [self._output(row.tolist(), generation.stop, int(n_in), elapsed, p.notes)
                for row, n_in, p in zip(new_tokens, input_counts, prepared)]

    def _output(self, tokens: list[int], stops: tuple[str, ...], n_in: int, latency: float,
                notes: dict[str, Any]) -> ModelOutput:
        ends = set(self._eos())
        length = next((i + 1 for i, t in enumerate(tokens) if t in ends), len(tokens))
        length = self._through_stop(tokens[:length], stops)
        raw = self.tokenizer.decode(tokens[:length], skip_special_tokens=True)
        text = cut_at_stop(raw, stops)
        return ModelOutput(text=text.strip(), raw_text=raw, parts=(Part.of_text(text.strip()),),
                           usage=Usage(input_tokens=n_in, output_tokens=length), latency_s=latency, metadata=notes)

    def _through_stop(self, tokens: list[int], stops: tuple[str, ...]) -> int:
        """How many tokens it takes to complete the first stop string (all of them if none is
        there): a row stopped early in a static batch is padded after its stop, and continuous
        batching runs past a stop that spans tokens; neither is generated answer."""
        def has_stop(count: int) -> bool:
            text = self.tokenizer.decode(tokens[:count], skip_special_tokens=True)
            return cut_at_stop(text, stops) != text

        if not stops or not has_stop(len(tokens)):
            return len(tokens)
        low, high = 1, len(tokens)  # binary search: a decoded prefix keeps a stop once it has one
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if has_stop(middle) else (middle + 1, high)
        return low

    def close(self) -> None:
        del self.model
        self._release_memory()


def _paged_cache(inputs: list[list[int]], max_new_tokens: int, in_flight: int) -> dict[str, int]:
    """A paged cache for this window only: `in_flight` requests of its longest prompt plus the
    generation, and prefill of that many prompts in one step. Left to itself, transformers sizes
    the cache from free device memory, which on a CPU is 80-90 % of the machine's free RAM (5-6x
    slower on arith_mini)."""
    longest = max(map(len, inputs))
    pages = -(-(longest + max_new_tokens) // PAGE_SIZE)
    return {"page_size": PAGE_SIZE, "num_blocks": in_flight * (pages + 1), "max_requests_per_batch": in_flight,
            "max_batch_tokens": max(longest, min(MAX_PREFILL_TOKENS, in_flight * longest))}


def _eos_ids(model: Any) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        return []
    return list(eos) if isinstance(eos, (list, tuple)) else [eos]


def _is_out_of_memory(exc: Exception) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or _says_out_of_memory(str(exc))


def _says_out_of_memory(message: str) -> bool:
    message = message.lower()
    return "out of memory" in message or "can't allocate memory" in message  # the CPU allocator's wording


def _load_processor(transformers: Any, path: Path) -> Any:
    has_processor = any((path / name).exists() for name in
                        ("processor_config.json", "preprocessor_config.json", "feature_extractor_config.json"))
    if has_processor:
        try:
            return transformers.AutoProcessor.from_pretrained(path)
        except (ImportError, AttributeError, ValueError, OSError):
            # e.g. a video processor that needs torchvision: keep the other parts, else the tokenizer
            processor = _processor_without_video(transformers, path)
            if processor is not None:
                return processor
    return transformers.AutoTokenizer.from_pretrained(path)


def _processor_class_name(path: Path) -> str | None:
    for name in ("processor_config.json", "preprocessor_config.json"):
        file = path / name
        if file.exists():
            found = json.loads(file.read_text()).get("processor_class")
            if found:
                return found
    return None


def _processor_without_video(transformers: Any, path: Path) -> Any:
    """An omni processor (Qwen2.5-Omni: images, audio, video) built from its parts but its video
    processor, which needs torchvision; video then goes in as frames, as for image-only models."""
    processor_class = getattr(transformers, _processor_class_name(path) or "", None)
    if processor_class is None or "video_processor" not in processor_class.get_attributes():
        return None
    others = [name for name in processor_class.get_attributes() if name != "video_processor"]
    if any(name not in PART_LOADERS for name in others):
        return None
    try:
        parts = {name: getattr(transformers, PART_LOADERS[name]).from_pretrained(path) for name in others}
    except (ImportError, AttributeError, ValueError, OSError):
        return None
    template = getattr(parts["tokenizer"], "chat_template", None)  # the tokenizer reads chat_template.jinja too
    return _accepting_no_video(processor_class)(**parts, video_processor=None, chat_template=template)


def _accepting_no_video(processor_class: type) -> type:
    """`processor_class` that takes and saves None for its video processor: the base class's type
    check looks the video base class up, which fails without torchvision, and its save_pretrained
    saves every part it names."""

    def check_argument_for_proper_class(self: Any, name: str, argument: Any) -> Any:
        if name == "video_processor" and argument is None:
            return None
        return processor_class.check_argument_for_proper_class(self, name, argument)

    def save_pretrained(self: Any, save_directory: str | os.PathLike, **kwargs: Any) -> list[str]:
        target = Path(save_directory)
        target.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(target)
        if isinstance(self.chat_template, str):
            (target / "chat_template.jinja").write_text(self.chat_template)
        config = {k: v for k, v in self.to_dict().items() if k != "video_processor"}
        (target / "processor_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        return [str(target / "processor_config.json")]

    return type(processor_class.__name__, (processor_class,),
                {"check_argument_for_proper_class": check_argument_for_proper_class,
                 "save_pretrained": save_pretrained})


def _load_model(transformers: Any, path: Path, dtype: Any, args: dict[str, Any],
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
    raise ValueError(f"no generative model class loads {path}:\n  " + "\n  ".join(errors))


def _token_texts(tokenizer: Any) -> list[str]:
    """Each token id's text. A fast tokenizer's Rust backend decodes them one by one in a sixth of
    the time batch_decode takes (0.08 s against 0.5 s for SmolLM2's 49k tokens)."""
    ids = range(len(tokenizer))
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer.batch_decode([[i] for i in ids])
    return [backend.decode([i], skip_special_tokens=False) for i in ids]


def _input_modalities(processor: Any) -> frozenset[Modality]:
    found = {Modality.TEXT}
    if getattr(processor, "image_processor", None) is not None:
        found |= {Modality.IMAGE, Modality.VIDEO}  # video as sampled frames
    if getattr(processor, "feature_extractor", None) is not None:
        found.add(Modality.AUDIO)
    return frozenset(found)
