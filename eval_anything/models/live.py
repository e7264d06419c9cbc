"""The `live` backend: a transformers model already in memory (one being trained), evaluated
through the `hf` backend's generation without a copy on disk or a second load.

`attach(folder, model, processor)` makes `live:FOLDER` name that model until `detach(folder)`. The
folder holds only what describes the model (the lineage file align's in-loop evaluation writes), so a
run's manifest records where the weights came from as for a checkpoint. Generation is the `hf`
backend's static batching: continuous batching would switch the model's attention implementation,
and this model goes back to training afterwards (greedy answers are the same either way). Linears
are left unpacked (a model in training keeps its own), so compare it with an `hf` run of its
checkpoint under `packed_linears=false`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from eval_anything.errors import UsageError
from eval_anything.models.base import ModelSpec
from eval_anything.models.continuous_batching import ContinuousBatching
from eval_anything.models.hf import AUTO, AUTO_START_BATCH, HFModel
from eval_anything.models.inputs import InputProcessor, input_modalities_of
from eval_anything.models.loading import LoadingOptions
from eval_anything.models.static_batching import STATIC

_ATTACHED: dict[str, tuple[Any, Any]] = {}
"""Resolved folder -> (model, processor)."""


def attach(folder: str | Path, model: Any, processor: Any) -> str:
    """Name `model` (with its processor) `live:FOLDER`; returns the reference to give ModelSpec."""
    key = str(Path(folder).resolve())
    _ATTACHED[key] = (model, processor)
    return key


def detach(folder: str | Path) -> None:
    _ATTACHED.pop(str(Path(folder).resolve()), None)


class LiveModel(HFModel):
    """`live:FOLDER` — the attached in-memory model. Arguments: batch_size (default auto), video_frames."""

    def __init__(self, spec: ModelSpec) -> None:
        ContinuousBatching.__init__(self, spec)  # the hf backend's state, without its loading
        key = str(Path(spec.reference).resolve())
        if key not in _ATTACHED:
            raise UsageError(f"live:{spec.reference}: no model is attached there (live models exist only "
                             "inside the process that attached them, e.g. during training)")
        model, processor = _ATTACHED[key]
        args = dict(spec.args)
        self.video_frames = int(args.pop("video_frames", 8))
        self.batching = STATIC
        requested = args.pop("batch_size", AUTO)
        self._auto_batch = requested == AUTO
        self._batch_size = AUTO_START_BATCH if self._auto_batch else int(requested)
        if args:
            raise UsageError(f"live: unknown model arguments {', '.join(sorted(args))} (batch_size, video_frames)")
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self._restore = {"padding_side": self.tokenizer.padding_side, "pad_token": self.tokenizer.pad_token,
                         "training": model.training}
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.inputs = InputProcessor(processor, self.video_frames, spec.label)
        self.input_modalities = input_modalities_of(processor)
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.packed_linears = 0
        self.options = LoadingOptions()  # loaded by its trainer: describe() reports the defaults' fields

    def close(self) -> None:
        """Hand the model back as it was: training mode, the tokenizer's padding side."""
        self.tokenizer.padding_side = self._restore["padding_side"]
        self.tokenizer.pad_token = self._restore["pad_token"]
        self.model.train(self._restore["training"])
        del self.model
