"""Static batching for local transformers models: requests that share a generation config, longest
prompt first, `batch_size` at a time through `model.generate`. The base of the `hf` backend's
engines; continuous batching (continuous_batching.py) sends here what it cannot take."""
from __future__ import annotations

import time
from collections import Counter
from typing import Any, Iterable, Iterator, Sequence

from eval_anything.datamodel import ModelOutput, Part, Request, Usage
from eval_anything.models.base import Model, ModelSpec, cut_at_stop
from eval_anything.models.inputs import InputProcessor, PreparedInput
from eval_anything.models.out_of_memory import halved_batch_size, is_out_of_memory, worth_retrying

STATIC = "static"


class StaticBatching(Model):
    """Generation in static batches, the answers cut at their end token or stop string.

    A subclass loads what is declared here (see HFModel). With batch_size auto a batch that runs
    out of memory is retried halved; with a fixed batch size, or a lone request, the error is raised.
    """

    model: Any
    tokenizer: Any
    inputs: InputProcessor
    device: Any
    _batch_size: int
    _auto_batch: bool

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.requests_by_batching: Counter[str] = Counter()
        """How many requests each batching generated."""

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def _static_stream(self, requests: Iterable[Request]) -> Iterator[tuple[Request, ModelOutput]]:
        for request, output in super().stream(requests):
            self.requests_by_batching[STATIC] += 1
            yield request, output

    def generate(self, requests: Sequence[Request]) -> list[ModelOutput]:
        outputs, ready = self.prepare_accepted(requests, self._prepare)
        groups: dict[Any, list[tuple[int, PreparedInput]]] = {}
        for index, prepared in ready:
            # one generate() call takes one generation config, so batch only requests that share it
            groups.setdefault(requests[index].generation, []).append((index, prepared))
        for group in groups.values():
            group.sort(key=lambda item: -len(requests[item[0]].prompt_text))
            for index, output in self._batches(requests, group):
                outputs[index] = output
        missing = [i for i, o in enumerate(outputs) if o is None]
        if missing:
            raise RuntimeError(f"{self.spec.label} produced no output for requests {missing}")
        return outputs  # type: ignore[return-value]

    def _batches(self, requests: Sequence[Request], group: list[tuple[int, PreparedInput]]
                 ) -> Iterator[tuple[int, ModelOutput]]:
        """(index, output) for the `group`'s requests, generated `batch_size` at a time."""
        start = 0
        while start < len(group):
            chunk = group[start : start + self._batch_size]
            try:
                results = self._generate_batch([requests[i] for i, _ in chunk], [p for _, p in chunk])
            except Exception as exc:
                if not (is_out_of_memory(exc) and worth_retrying(self._auto_batch, self._batch_size, len(chunk))):
                    raise
                self._batch_size = halved_batch_size(self._batch_size, len(chunk))
                continue
            yield from zip((index for index, _ in chunk), results)
            start += len(chunk)

    def _prepare(self, request: Request) -> PreparedInput:
        return self.inputs.prepare(request.parts)

    def _render(self, request: Request, prepared: PreparedInput) -> str:
        return self.inputs.render(prepared, request.prompt_text, request.system, request.history)

    def _encode(self, texts: list[str], prepared: list[PreparedInput]) -> Any:
        return self.inputs.encode(texts, prepared)

    def _generate_batch(self, requests: list[Request], prepared: list[PreparedInput]) -> list[ModelOutput]:
        import torch

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
        if generation.repetition_penalty != 1.0:
            sampling["repetition_penalty"] = generation.repetition_penalty
        stop = {"stop_strings": list(generation.stop), "tokenizer": self.tokenizer} if generation.stop else {}
        with torch.inference_mode():
            sequences = self.model.generate(**inputs, max_new_tokens=generation.max_new_tokens,
                                            pad_token_id=self.tokenizer.pad_token_id, synced_gpus=False, **sampling, **stop)
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

    def _eos(self) -> list[int]:
        ends = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id, *_eos_ids(self.model)}
        return sorted(e for e in ends if e is not None)


def _eos_ids(model: Any) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        return []
    return list(eos) if isinstance(eos, (list, tuple)) else [eos]
