"""Model backends behind one interface, chosen by `--model [backend:]reference`.

Each backend is registered with its `BackendTraits`: what the rest of the package needs to know about
it (where its weights are, whether it carries lineage, what a bundle packs, which argument batches it)
without importing it, so no module outside this package names a backend.
"""
from __future__ import annotations

import dataclasses
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
    """The reference names transformers weights, a local folder or a Hub id (`hf:DIR`, `vllm:ORG/NAME@REV`),
    resolved by `resolve_spec` (`weights.resolve_weights`): align can train from it, and a bundle notes
    that it is not packed (the rerun needs the folder or the Hub)."""
    cached_weights: str | None = None
    """"module:function" returning the folder of weights a backend keeps in a cache of its own, for a
    backend whose reference is a name rather than a path (`embedded:NAME`); imported only when called."""
    lineage: bool = False
    """Its reference folder may hold the lineage file align writes into what it trains
    (`manifest.LINEAGE_FILE`), which the run manifest then records."""
    packs_reference_file: bool = False
    """The reference is a file the run cannot be repeated without (replay predictions): a bundle packs it,
    and a rerun from the bundle reads the packed copy."""
    argument_check: str | None = None
    """"module:function" that checks a spec's model arguments before anything loads (unknown names,
    values that cannot be met), so a misspelt argument fails before the run starts; None: the backend
    checks them when it loads."""
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


HF_ARGUMENT_CHECK = "eval_anything.models.loading:check_hf_arguments"
register_backend("hf", "eval_anything.models.hf:HFModel",
                 BackendTraits(local_weights=True, lineage=True, argument_check=HF_ARGUMENT_CHECK,
                               batch_argument="batch_size", batch_size_flag=True))
register_backend("embedded", "eval_anything.models.embedded:load_embedded",
                 BackendTraits(cached_weights="eval_anything.models.embedded:embedded_model_dir",
                               argument_check=HF_ARGUMENT_CHECK, batch_argument="batch_size", batch_size_flag=True))
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
    return _imported(target)()


def resolve_spec(text: str | None, args: Mapping[str, Any] | None = None) -> ModelSpec:
    """The spec `--model`/`--model-args` name (lm-eval's spelling accepted), its weights resolved
    where the backend loads local weights: a Hub id to the commit it names now (see `with_weights`)."""
    from eval_anything.models.lm_eval_names import from_lm_eval
    from eval_anything.models.weights import names_a_path

    spec = parse_model_spec(text, args, backends.names())
    traits = _traits.get(spec.backend, BackendTraits())
    if traits.local_weights:
        spec = dataclasses.replace(spec, args=from_lm_eval(spec.backend, spec.args))
    if traits.argument_check:
        _imported(traits.argument_check)(spec.args)
    if traits.local_weights:
        missing_folder = names_a_path(spec.reference) and not Path(spec.reference).expanduser().is_dir()
        if not missing_folder:  # a folder that is not there is reported when the backend loads it
            spec = with_weights(spec)
    return spec


def _imported(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def with_weights(spec: ModelSpec) -> ModelSpec:
    """`spec` with its reference (and its PEFT adapter, `peft=`) resolved to folders; a Hub id goes
    through huggingface_hub's cache (`weights.resolve_weights`). The revision (`ORG/NAME@REV` or the
    `revision` argument) moves into the resolved weights, so both spellings are one model, ORG/NAME."""
    from eval_anything.models.weights import resolve_weights

    args = dict(spec.args)
    weights = spec.weights or resolve_weights(spec.reference, args.pop("revision", None))
    args.pop("revision", None)
    adapter = spec.adapter
    if adapter is None and args.get("peft") is not None:
        adapter = resolve_weights(str(args["peft"]))
    reference = weights.repo_id or spec.reference  # ORG/NAME@REV: the revision is in `weights`
    return dataclasses.replace(spec, reference=reference, args=args, weights=weights, adapter=adapter)


def local_weights_dir(reference: str) -> Path:
    """The folder of transformers weights a reference names: `embedded:NAME` (the backend's own cache),
    `DIR`, a Hub id `ORG/NAME[@REV]`, or either behind a backend with local weights (`hf:`, `vllm:`);
    for align's base models and critics, which train from a folder."""
    from eval_anything.models.weights import resolve_weights

    backend, sep, rest = reference.partition(":")
    traits = known_traits(backend) if sep else None
    if traits is not None and traits.cached_weights:
        return cached_weights_dir(backend)  # type: ignore[return-value]
    if traits is not None and traits.local_weights:
        reference = rest
    path = resolve_weights(reference).path
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"model {reference} is not a transformers model directory (no config.json)")
    return path


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
           "cached_weights_dir", "known_traits", "load_model", "local_weights_dir", "parse_model_args",
           "register_backend", "resolve_spec", "with_weights"]
