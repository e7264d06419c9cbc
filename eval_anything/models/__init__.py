"""Model backends behind one interface, chosen by `--model [backend:]reference`.

Each backend is registered with its `BackendTraits`: what the rest of the package needs to know about
it (where its weights are, whether it carries lineage, what a bundle packs, which argument batches it)
without importing it, so no module outside this package names a backend.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from eval_anything.models.base import Model, ModelSpec, parse_model_args, parse_model_spec
from eval_anything.registry import Registry, UnknownNameError


@dataclass(frozen=True)
class BackendTraits:
    """What a backend is, for the modules that treat backends differently."""

    local_weights: bool = False
    """The reference is a local folder of transformers weights (`hf:DIR`, `vllm:DIR`): align can train
    from it, and a bundle notes that it is not packed (the rerun needs the folder)."""
    cached_weights: str | None = None
    """"module:function" returning the folder of weights a backend keeps in a cache of its own, for a
    backend whose reference is a name rather than a path (`embedded:NAME`); imported only when called."""
    lineage: bool = False
    """Its reference folder may hold the lineage file align writes into what it trains
    (`manifest.LINEAGE_FILE`), which the run manifest then records."""
    packs_reference_file: bool = False
    """The reference is a file the run cannot be repeated without (replay predictions): a bundle packs it,
    and a rerun from the bundle reads the packed copy."""
    batch_argument: str | None = None
    """The model argument bounding how many requests it handles at once (`--judge-concurrency` sets it);
    None for a backend that takes no such argument."""
    batch_size_flag: bool = False
    """`batch_argument` is the batch the model computes together (padding follows it, so outputs can
    change with it): `--batch-size` sets it, `noise --batch-sizes` varies it and align's generating
    stages pass their batch_size (and video_frames). False where the backend forms its own batches
    (vLLM's scheduler, a remote API) or has none."""


backends: Registry[Callable[[ModelSpec], Model]] = Registry("model backend")
_traits: dict[str, BackendTraits] = {}


def register_backend(name: str, entry: Callable[[ModelSpec], Model] | str, traits: BackendTraits) -> None:
    """Add a backend ("module:attr" entries are imported on first use) with its traits."""
    backends.register(name, entry)
    _traits[name] = traits


register_backend("hf", "eval_anything.models.hf:HFModel",
                 BackendTraits(local_weights=True, lineage=True, batch_argument="batch_size", batch_size_flag=True))
register_backend("embedded", "eval_anything.models.embedded:load_embedded",
                 BackendTraits(cached_weights="eval_anything.models.embedded:embedded_model_dir",
                               batch_argument="batch_size", batch_size_flag=True))
register_backend("openai", "eval_anything.models.openai_api:OpenAIModel",
                 BackendTraits(batch_argument="concurrency"))
register_backend("replay", "eval_anything.models.replay:ReplayModel",
                 BackendTraits(packs_reference_file=True))
register_backend("vllm", "eval_anything.models.vllm_backend:VLLMModel",
                 BackendTraits(local_weights=True, lineage=True, batch_argument="batch_size"))
register_backend("live", "eval_anything.models.live:LiveModel", BackendTraits(lineage=True, batch_argument="batch_size"))


def backend_traits(name: str) -> BackendTraits:
    """The traits of a registered backend; an unknown name raises UnknownNameError (with suggestions)."""
    if name not in _traits:
        raise UnknownNameError(backends.unknown_message(name))
    return _traits[name]


def known_traits(name: object) -> BackendTraits | None:
    """The traits of `name` when it is a registered backend (as read from a manifest or a reference), else None."""
    return _traits.get(name) if isinstance(name, str) else None


def backends_where(predicate: Callable[[BackendTraits], bool]) -> list[str]:
    """The registered backends whose traits satisfy `predicate`, sorted (for messages and help)."""
    return [name for name in backends.names() if predicate(_traits[name])]


def cached_weights_dir(name: str) -> Path | None:
    """The weights folder of a backend that keeps its own (`cached_weights`), filled on first use; else None."""
    target = backend_traits(name).cached_weights
    if target is None:
        return None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)()


def resolve_spec(text: str | None, args: Mapping[str, Any] | None = None) -> ModelSpec:
    return parse_model_spec(text, args, backends.names())


def load_model(spec: ModelSpec) -> Model:
    """Build the backend for a spec; heavy libraries are imported only here."""
    return backends.get(spec.backend)(spec)


class LazyModel:
    """Loads the backend on first use, so a run with nothing left to do loads nothing."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.model: Model | None = None

    def get(self) -> Model:
        if self.model is None:
            self.model = load_model(self.spec)
        return self.model

    @property
    def generated(self) -> int:
        return self.model.generated if self.model else 0

    def close(self) -> None:
        if self.model is not None:
            self.model.close()


__all__ = ["BackendTraits", "LazyModel", "Model", "ModelSpec", "backend_traits", "backends", "backends_where",
           "cached_weights_dir", "known_traits", "load_model", "parse_model_args", "register_backend", "resolve_spec"]
