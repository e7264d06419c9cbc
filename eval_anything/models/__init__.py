"""Model backends behind one interface, chosen by `--model [backend:]reference`."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from eval_anything.models.base import Model, ModelSpec, parse_model_args, parse_model_spec
from eval_anything.registry import Registry

backends: Registry[Callable[[ModelSpec], Model]] = Registry("model backend")
backends.register("hf", "eval_anything.models.hf:HFModel")
backends.register("embedded", "eval_anything.models.embedded:load_embedded")
backends.register("openai", "eval_anything.models.openai_api:OpenAIModel")
backends.register("replay", "eval_anything.models.replay:ReplayModel")
backends.register("vllm", "eval_anything.models.vllm_backend:VLLMModel")


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


__all__ = ["LazyModel", "Model", "ModelSpec", "backends", "load_model", "parse_model_args", "resolve_spec"]
