"""The model interface every backend implements, and how `--model` strings are read."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

from eval_anything.datamodel import Modality, ModelOutput, Request
from eval_anything.errors import UsageError
from eval_anything.media import MediaError
from eval_anything.redaction import redact

if TYPE_CHECKING:
    from eval_anything.models.weights import ResolvedWeights

@dataclass(frozen=True)
class ModelSpec:
    """Which model to run: a backend, a reference it understands, and backend arguments."""

    backend: str
    reference: str
    """As the user named it: a folder, a Hub id (ORG/NAME[@REV]), a served name, a file."""
    args: Mapping[str, Any] = field(default_factory=dict)
    weights: ResolvedWeights | None = None
    """Where the reference's weights are, for a backend with local weights (`models.resolve_spec` fills it)."""
    adapter: ResolvedWeights | None = None
    """Where the PEFT adapter of `args["peft"]` is, likewise."""

    def describe(self) -> dict[str, Any]:
        """Identity for the run manifest and id: a Hub model adds its repo, revision and commit
        (`weights`, and `adapter` under "peft"), a local folder nothing, so its run ids stay as they were."""
        described = {"backend": self.backend, "reference": self.reference, "args": redact(self.args)}
        if self.weights is not None:
            described.update(self.weights.identity())
        if self.adapter is not None and self.adapter.identity():
            described["peft"] = self.adapter.identity()
        return described

    @property
    def label(self) -> str:
        return f"{self.backend}:{self.reference}"


def parse_model_args(text: str | None) -> dict[str, Any]:
    """`key=value,key=value` into a dict; numbers and booleans are converted. A value may be JSON
    with commas inside brackets (`device_map={"a":0,"b":1}`), and an item with no `=` but a `:`
    continues the value before it (`max_memory=0:20GiB,1:20GiB,cpu:64GiB`)."""
    args: dict[str, Any] = {}
    last: str | None = None
    for item in filter(None, _top_level_items(text or "")):
        key, sep, value = item.partition("=")
        if not sep and last is not None and ":" in item and ":" in str(args[last]):
            args[last] = f"{args[last]},{item.strip()}"
            continue
        if not sep or not key.strip():
            raise UsageError(f"model argument {item!r} is not key=value")
        last = key.strip()
        args[last] = _convert(value.strip())
    return args


def _top_level_items(text: str) -> list[str]:
    """`text` split at the commas outside brackets."""
    items, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            items.append(text[start:index])
            start = index + 1
    items.append(text[start:])
    return items


def _convert(value: str) -> Any:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


LM_EVAL_MODELS = {"hf": "hf", "hf-auto": "hf", "huggingface": "hf", "hf-multimodal": "hf",
                  "vllm": "vllm", "vllm-vlm": "vllm"}
"""lm-evaluation-harness's `--model` names for local transformers weights -> our backend; with them the
weights are named by the model argument `pretrained=`, as there."""


def batch_size_value(requested: Any, subject: str) -> Any:
    """`auto`, or a whole number of at least 1 (an int or its digits); else a UsageError starting with
    `subject` (the flag or model argument that gave it)."""
    if requested == "auto":
        return requested
    if isinstance(requested, str) and requested.strip().isdigit():
        requested = int(requested)
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise UsageError(f"{subject}: use a whole number of at least 1, or auto")
    return requested


def parse_model_spec(text: str | None, args: Mapping[str, Any] | None = None, backends: Iterable[str] = ()) -> ModelSpec:
    """Read `[backend:]reference`; without a backend, a directory means `hf`, a .jsonl file `replay`;
    lm-eval's `hf` (or `vllm`) with `pretrained=REF` among the arguments means `hf:REF`."""
    args = dict(args or {})
    if not text:
        if "pretrained" in args:
            raise UsageError("model argument pretrained= needs --model hf (or vllm), as in lm-eval")
        return ModelSpec("embedded", "smollm2-135m-instruct", args)
    if text in LM_EVAL_MODELS and "pretrained" in args:
        return ModelSpec(LM_EVAL_MODELS[text], str(args.pop("pretrained")), args)
    if text in LM_EVAL_MODELS:
        raise UsageError(f"--model {text} names no model: add --model-args pretrained=DIR_OR_ORG/NAME, "
                         f"or write --model {LM_EVAL_MODELS[text]}:DIR_OR_ORG/NAME")
    backend, sep, reference = text.partition(":")
    if sep and backend in set(backends):
        if "pretrained" in args:
            raise UsageError(f"--model {text} already names the model; drop pretrained={args['pretrained']}")
        return ModelSpec(backend, reference, args)
    path = Path(text)
    if path.is_dir():
        return ModelSpec("hf", text, args)
    if path.suffix == ".jsonl" and path.is_file():
        return ModelSpec("replay", text, args)
    raise UsageError(
        f"cannot tell which backend runs {text!r}: name one as BACKEND:REFERENCE "
        f"(backends: {', '.join(sorted(backends))}; a Hub id as hf:ORG/NAME[@REVISION]), "
        f"or give an existing model directory or predictions .jsonl"
    )


class BackendError(RuntimeError):
    """The backend cannot serve any request (a refused key, an unknown model); the run stops and
    keeps what it finished, so a rerun after fixing the cause resumes."""


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """The text up to the earliest stop string."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


Prepared = TypeVar("Prepared")


class Model(ABC):
    """A backend. One required method: generate a batch of requests, outputs in the same order.

    A failure confined to one request (corrupt media, a refused API call) is returned as that
    request's `ModelOutput.failed(...)`; an exception means the whole backend is broken.
    """

    input_modalities: frozenset[Modality] = frozenset({Modality.TEXT})
    output_modalities: frozenset[Modality] = frozenset({Modality.TEXT})

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.generated = 0
        """How many requests this instance generated: resumed runs check it stays 0."""

    @property
    def batch_size(self) -> int:
        """How many requests the runner hands to one `generate` call."""
        return 1

    @abstractmethod
    def generate(self, requests: Sequence[Request]) -> list[ModelOutput]: ...

    def stream(self, requests: Iterable[Request]) -> Iterator[tuple[Request, ModelOutput]]:
        """Outputs as they complete; the default generates `batch_size` requests at a time."""
        batch: list[Request] = []
        for request in requests:
            batch.append(request)
            if len(batch) >= self.batch_size:
                yield from self._generate_counted(batch)
                batch = []
        if batch:
            yield from self._generate_counted(batch)

    def _generate_counted(self, batch: list[Request]) -> Iterator[tuple[Request, ModelOutput]]:
        outputs = self.generate(batch)
        if len(outputs) != len(batch):
            raise RuntimeError(f"{self.spec.label} returned {len(outputs)} outputs for {len(batch)} requests")
        self.generated += len(batch)
        yield from zip(batch, outputs)

    def missing_modalities(self, needed: Iterable[Modality]) -> frozenset[Modality]:
        return frozenset(needed) - self.input_modalities

    def input_refusal(self, request: Request) -> ModelOutput | None:
        """The failed output for a request with input this model does not accept; None if it accepts it all."""
        missing = self.missing_modalities(request.modalities)
        if not missing:
            return None
        names = ", ".join(sorted(m.value for m in missing))
        return ModelOutput.failed(f"{self.spec.label} does not accept {names} input")

    def prepare_accepted(self, requests: Sequence[Request], prepare: Callable[[Request], Prepared]
                         ) -> tuple[list[ModelOutput | None], list[tuple[int, Prepared]]]:
        """`prepare` each request this model accepts: the outputs so far (a failure for input it does
        not accept or media that cannot be decoded, else None) and the (index, prepared) pairs."""
        outputs: list[ModelOutput | None] = [None] * len(requests)
        ready: list[tuple[int, Prepared]] = []
        for index, request in enumerate(requests):
            outputs[index] = self.input_refusal(request)
            if outputs[index] is None:
                try:
                    ready.append((index, prepare(request)))
                except MediaError as exc:
                    outputs[index] = ModelOutput.failed(str(exc))
        return outputs, ready

    def describe(self) -> dict[str, Any]:
        """Identity for the run manifest; never includes secrets."""
        return {**self.spec.describe(), "input_modalities": sorted(m.value for m in self.input_modalities)}

    def close(self) -> None:
        """Release resources (servers, GPU memory)."""
