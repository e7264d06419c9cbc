"""Continuous batching for the `hf` backend: greedy text-only requests through transformers'
continuous-batching manager (`init_continuous_batching`), a paged KV cache sized for each window of
requests, at most batch_size in flight, a finished request's slot refilled at once. What the manager
cannot take goes in static batches (static_batching.py)."""
from __future__ import annotations

import inspect
import itertools
import time
from typing import Any, Iterable, Iterator

from eval_anything.datamodel import Modality, ModelOutput, Request
from eval_anything.models.base import ModelSpec
from eval_anything.models.out_of_memory import halved_batch_size, says_out_of_memory, worth_retrying
from eval_anything.models.static_batching import StaticBatching

CONTINUOUS = "continuous"
PAGE_SIZE = 32
"""Tokens per paged-cache page (transformers' default, 256, wastes most of a page on short answers)."""
MAX_PREFILL_TOKENS = 4096
"""Most prompt tokens prefilled in one step (unless one prompt is longer)."""


class ContinuousBatching(StaticBatching):
    """Greedy text-only requests through the manager, the rest in static batches: requests with media
    (the manager takes token ids only), sampled requests (its random draws depend on which requests
    happen to share a step, so a seeded repeat would not reproduce) and everything after transformers
    refuses to build a manager for the model (`continuous_unsupported` records why). Greedy answers
    are the same either way."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.continuous_unsupported: str | None = None
        self._end_tokens: dict[tuple[str, ...], list[int]] = {}
        self._vocabulary: list[str] | None = None

    def _continuous_stream(self, requests: Iterable[Request]) -> Iterator[tuple[Request, ModelOutput]]:
        """Greedy text-only requests through one continuous-batching manager per window (the
        runner's whole window, so freed slots are refilled across it), the rest in static batches."""
        window = max(256, 16 * self._batch_size)  # as large as the runner's, so one window is one manager
        iterator = iter(requests)
        while chunk := list(itertools.islice(iterator, window)):
            suits = [self._continuous_suits(r) for r in chunk]  # decided once: a fallback changes the answer
            yield from self._managed_stream([r for r, fits in zip(chunk, suits) if fits])
            yield from self._static_stream([r for r, fits in zip(chunk, suits) if not fits])

    def _continuous_suits(self, request: Request) -> bool:
        return (self.continuous_unsupported is None and request.generation.greedy
                and request.generation.repetition_penalty == 1.0 and request.modalities <= {Modality.TEXT})

    def _managed_stream(self, requests: list[Request]) -> Iterator[tuple[Request, ModelOutput]]:
        """`requests` through one manager; with batch_size auto, those that ran out of memory go
        through another with fewer in flight, as static batches halve."""
        if not requests:
            return
        started = time.perf_counter()
        inputs = [self._token_ids(r) for r in requests]
        max_new_tokens = max(r.generation.max_new_tokens for r in requests)
        # built outside the try: a config of ours transformers refuses is our bug, not the model's limit
        cache = paged_cache_config(inputs, max_new_tokens, min(self._batch_size, len(inputs)))
        try:
            manager = self._start_manager(cache, max_new_tokens)
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
                if worth_retrying(self._auto_batch, self._batch_size, len(requests)) \
                        and says_out_of_memory(output.error or ""):
                    out_of_memory.append(requests[index])
                    continue
                self.generated += 1
                self.requests_by_batching[CONTINUOUS] += 1
                yield requests[index], output
        finally:
            manager.stop(block=True, timeout=10, hard_stop=True)  # nothing left to flush unless abandoned
            manager.destroy()
        if out_of_memory:
            self._batch_size = halved_batch_size(self._batch_size, len(requests))
            yield from self._managed_stream(out_of_memory)

    def _start_manager(self, cache: Any, max_new_tokens: int) -> Any:
        import torch
        from transformers import GenerationConfig

        config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=self._eos(),
                                  pad_token_id=self.tokenizer.pad_token_id)
        manager = self.model.init_continuous_batching(generation_config=config, continuous_batching_config=cache)
        if self.device.type == "cpu":
            from eval_anything.models.cpu_kernels import release_openmp_threads

            release_openmp_threads()  # the generation thread gets the CPUs' OpenMP threads
        with torch.inference_mode():  # the generation thread takes the mode it was started in
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

    def _stop_tokens(self, stops: tuple[str, ...]) -> list[int]:
        """EOS and every token whose text contains a stop string: the manager has no stop strings.
        A stop spanning tokens is only cut afterwards. Cached: it decodes the whole vocabulary."""
        if stops not in self._end_tokens:
            if self._vocabulary is None:
                self._vocabulary = _token_texts(self.tokenizer)
            found = {i for i, text in enumerate(self._vocabulary) if any(s and s in text for s in stops)}
            self._end_tokens[stops] = sorted(found.union(self._eos()))
        return self._end_tokens[stops]


PAGE_SIZE_NAMES = ("page_size", "block_size")
"""What ContinuousBatchingConfig calls the tokens per page: page_size from transformers 5.18 on (block_size
kept there as a deprecated alias), block_size up to 5.17."""


def paged_cache_config(inputs: list[list[int]], max_new_tokens: int, in_flight: int, config_class: Any = None) -> Any:
    """A ContinuousBatchingConfig (`config_class`, default transformers' own) for this window only: `in_flight`
    requests of its longest prompt plus the generation, and prefill of that many prompts in one step. Left to
    itself, transformers sizes the cache from free device memory, which on a CPU is 80-90 % of the machine's
    free RAM (5-6x slower on arith_mini). The page size goes under whichever name the class takes."""
    if config_class is None:
        from transformers.generation.configuration_utils import ContinuousBatchingConfig as config_class
    taken = inspect.signature(config_class).parameters
    name = next((n for n in PAGE_SIZE_NAMES if n in taken), None)
    if name is None:
        import transformers

        raise TypeError(f"transformers {transformers.__version__}'s {config_class.__name__} takes none of "
                        f"{', '.join(PAGE_SIZE_NAMES)} for its page size: eval-anything does not know this "
                        "version's paged cache; install transformers 5.17 or later (5.25 is tested) or pass "
                        "the model argument batching=static")
    longest = max(map(len, inputs))
    pages = -(-(longest + max_new_tokens) // PAGE_SIZE)
    return config_class(**{name: PAGE_SIZE}, num_blocks=in_flight * (pages + 1), max_requests_per_batch=in_flight,
                        max_batch_tokens=max(longest, min(MAX_PREFILL_TOKENS, in_flight * longest)))


def _token_texts(tokenizer: Any) -> list[str]:
    """Each token id's text. A fast tokenizer's Rust backend decodes them one by one in a sixth of
    the time batch_decode takes (0.08 s against 0.5 s for SmolLM2's 49k tokens)."""
    ids = range(len(tokenizer))
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer.batch_decode([[i] for i in ids])
    return [backend.decode([i], skip_special_tokens=False) for i in ids]
