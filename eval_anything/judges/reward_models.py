"""Reward models that read a prompt and a response (text, images, audio) in one forward pass, the
way Align-Anything's synergy scorer does (align_anything/evaluation/eval_anything/amg/synergy/
reward_eval.py): the text is

    "USER: {prompt}" + "\\nASSISTANT:\\n" + {a placeholder per image, then per audio clip} + {text}

with each placeholder the reward model's own (LLaVA's ``<image>``, Qwen2-Audio's
``<|audio_bos|><|AUDIO|><|audio_eos|>``...), and the media go through the reward model's own
processor. One forward pass gives a score per token; a reading keeps the end score (at the last
non-padding token) and the mean over the tokens. The original reports sigmoid(end score) for an
image-audio pair and sigmoid(token mean) for text-image and text-audio pairs; which to use is the
caller's choice.

A reward model is a local folder in one of two layouts:

``score head``
    Any transformers model folder (config.json, weights, its processor or tokenizer) whose base
    model gives last hidden states: ``AutoModel`` (LlavaModel, Qwen2AudioModel, a Qwen2.5-Omni
    thinker's model...), else the image-text-to-text, multimodal-LM or causal-LM class (then the
    last of its hidden states). Beside it, ``score_head.safetensors`` (SCORE_HEAD_FILE) holds
    ``weight``, float, shape [1, hidden_size] (the text model's hidden size), and optionally
    ``bias``, shape [1]. The score of token t is ``weight @ h_t + bias``. `save_score_head`
    writes one.

``sequence classification``
    A transformers ``*ForSequenceClassification`` folder with one label (no score head file).
    The end score is the model's own pooled logit; the per-token scores are its ``score`` linear
    head over the last hidden states (NaN token mean when its head is no per-token linear, e.g. a
    pooler). Text-only ones are what `reward_model` always read; multimodal ones exist in
    transformers for some configs (Gemma3ForSequenceClassification and
    Qwen3_5ForSequenceClassification take pixel_values; none takes audio).

Everything loads lazily, in float32 on the CPU, in eval mode; forward passes run under
torch.inference_mode.
"""
from __future__ import annotations

import inspect
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from eval_anything.datamodel import Modality, Part
from eval_anything.errors import UsageError

SCORE_HEAD_FILE = "score_head.safetensors"
"""The score head of a `score head` reward model: tensors `weight` [1, hidden_size], `bias` [1]."""
HEAD_SCORE = "score_head"
HEAD_SEQUENCE_CLASSIFICATION = "sequence_classification"
USER_FORMAT = "USER: {prompt}"
ASSISTANT_FORMAT = "\nASSISTANT:\n{media}{response}"
"""The original's two halves of the text; {media} holds the placeholders."""
MEDIA_ORDER = (Modality.IMAGE, Modality.AUDIO)
"""Placeholders go image(s) first, then audio clip(s), as the original's `<image><audio>`."""
BASE_CLASSES = ("AutoModel", "AutoModelForImageTextToText", "AutoModelForMultimodalLM", "AutoModelForCausalLM")
"""The classes tried, in order, for a score-head model; the first gives last_hidden_state."""
_PROBE = "REWARD-PLACEHOLDER-PROBE"
# processor attributes naming a medium's token and the tokens around it, when the chat template
# does not show them
_TOKEN_ATTRIBUTES = {
    Modality.IMAGE: ("image_token", ("vision_bos_token", "vision_start_token"), ("vision_eos_token", "vision_end_token")),
    Modality.AUDIO: ("audio_token", ("audio_bos_token", "audio_start_token"), ("audio_eos_token", "audio_end_token")),
}
# forward() arguments through which a model class takes a medium
_FORWARD_ARGUMENTS = {Modality.IMAGE: ("pixel_values",), Modality.AUDIO: ("input_features", "input_values", "audio")}


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    z = math.exp(x)
    return z / (1 + z)


@dataclass(frozen=True)
class RewardReading:
    """What one forward pass of a reward model gave."""

    end_score: float
    """The score at the last non-padding token (a sequence-classification model's pooled logit)."""
    token_mean: float
    """The mean of the per-token scores over the non-padding tokens, media tokens included."""
    tokens: int
    """How many non-padding tokens the model read, media tokens included."""

    @property
    def end_sigmoid(self) -> float:
        """sigmoid(end_score): the original's image-audio reward."""
        return sigmoid(self.end_score)

    @property
    def token_mean_sigmoid(self) -> float:
        """sigmoid(token_mean): the original's text-image and text-audio reward."""
        return sigmoid(self.token_mean)


def reward_text(prompt: str, response: str, media: str = "") -> str:
    """The original's text: USER turn, ASSISTANT turn, the media placeholders, then the response."""
    return USER_FORMAT.format(prompt=prompt) + ASSISTANT_FORMAT.format(media=media, response=response)


def save_score_head(directory: str | Path, weight: Any, bias: Any = None) -> Path:
    """Writes `directory`/score_head.safetensors from a [1, hidden_size] weight (and a [1] bias)."""
    import torch
    from safetensors.torch import save_file

    tensors = {"weight": torch.as_tensor(weight, dtype=torch.float32).reshape(1, -1).contiguous()}
    if bias is not None:
        tensors["bias"] = torch.as_tensor(bias, dtype=torch.float32).reshape(1).contiguous()
    target = Path(directory) / SCORE_HEAD_FILE
    save_file(tensors, target, metadata={"format": "pt"})
    return target


class RewardModel:
    """A reward model, a local folder or a Hub id (see the module for the two folder layouts).

    `input_modalities` says what it takes without loading its weights, so a run can refuse media
    it cannot score before the first call; `read` raises ValueError for any other medium. Images
    and audio clips are decoded as the hf backend decodes them (audio resampled to the feature
    extractor's rate). `placeholders` overrides the placeholder for a medium, for a processor
    whose chat template and attributes do not show it. Reads are serialised (one lock).
    """

    def __init__(self, reference: str | Path, max_length: int = 2048,
                 placeholders: Mapping[Modality | str, str] | None = None) -> None:
        from eval_anything.models.weights import resolve_weights

        self.weights = resolve_weights(str(reference))  # a folder, or a Hub id through the HF cache
        self.path = self.weights.path
        if not (self.path / "config.json").exists():
            raise FileNotFoundError(f"reward model directory {self.path} has no config.json")
        self.max_length = max_length
        self._override = {Modality(k): v for k, v in (placeholders or {}).items()}
        self.head_kind = HEAD_SCORE if (self.path / SCORE_HEAD_FILE).exists() else HEAD_SEQUENCE_CLASSIFICATION
        self._lock = threading.RLock()
        self._processor: Any = None
        self._config: Any = None
        self._modalities: frozenset[Modality] | None = None
        self._placeholders: dict[Modality, str] = {}
        self._model: Any = None
        self._from_base = False
        self._head: tuple[Any, Any] | None = None

    # ------------------------------------------------------------------ what it takes

    @property
    def processor(self) -> Any:
        """The reward model's processor (its tokenizer for a text-only model); loaded once."""
        with self._lock:
            if self._processor is None:
                import transformers

                from eval_anything.models.inputs import load_processor

                transformers.utils.logging.disable_progress_bar()
                processor = load_processor(transformers, self.path)
                tokenizer = getattr(processor, "tokenizer", processor)
                if tokenizer.pad_token is None:
                    tokenizer.pad_token = tokenizer.eos_token
                self._processor = processor
            return self._processor

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def input_modalities(self) -> frozenset[Modality]:
        """TEXT, plus IMAGE and AUDIO when the processor takes the medium, a placeholder for it is
        known and the model class takes it (read from the config and processor, not the weights).
        Video is never taken: the original scores images and audio."""
        with self._lock:
            if self._modalities is None:
                from eval_anything.models.inputs import input_modalities_of

                offered = input_modalities_of(self.processor)
                model_class = self._model_class()
                found = {Modality.TEXT}
                for modality in MEDIA_ORDER:
                    if modality not in offered or not _class_takes(model_class, modality):
                        continue
                    placeholder = self._override.get(modality) or _placeholder(self.processor, modality)
                    if placeholder:
                        self._placeholders[modality] = placeholder
                        found.add(modality)
                self._modalities = frozenset(found)
            return self._modalities

    def check(self, modalities: Iterable[Modality | str]) -> None:
        """Raises ValueError, naming the folder and the medium, for a modality it does not take."""
        taken = self.input_modalities
        for modality in sorted({Modality(m) for m in modalities}, key=lambda m: m.value):
            if modality not in taken:
                names = ", ".join(m.value for m in sorted(taken, key=lambda m: m.value))
                raise UsageError(f"reward model {self.path} does not take {modality.value} input "
                                 f"(it takes {names})")

    def placeholder(self, modality: Modality | str) -> str:
        """The text standing for one `modality` part in the prompt (the processor expands it)."""
        modality = Modality(modality)
        self.check([modality])
        if modality is Modality.TEXT:
            raise ValueError("text has no placeholder")
        return self._placeholders[modality]

    def format_text(self, prompt: str, text: str, media: Sequence[Part] = ()) -> str:
        """The text given to the processor: the original's format with this model's placeholders."""
        self._check_parts(media)
        marks = "".join(self.placeholder(m) for m in MEDIA_ORDER for part in media if part.modality is m)
        return reward_text(prompt, text, marks)

    # ------------------------------------------------------------------ scoring

    def read(self, prompt: str, text: str, media: Sequence[Part] = ()) -> RewardReading:
        """Scores `text` (and `media`: images and audio clips, in any order) as the answer to `prompt`."""
        return self.read_formatted(self.format_text(prompt, text, media), media)

    def read_formatted(self, formatted: str, media: Sequence[Part] = ()) -> RewardReading:
        """Scores an already formatted text holding one placeholder per media part (images first)."""
        import torch

        self._check_parts(media)
        with self._lock:
            inputs = self._encode(formatted, media)
            model = self._loaded()
            inputs = {k: (v.to(torch.float32) if v.is_floating_point() else v) if isinstance(v, torch.Tensor) else v
                      for k, v in inputs.items()}
            mask = inputs["attention_mask"][0].bool() if "attention_mask" in inputs else None
            with torch.inference_mode():
                if self.head_kind == HEAD_SCORE:
                    scores, end = self._head_scores(model, inputs), None
                else:
                    output = model(**inputs, output_hidden_states=True)
                    end = float(output.logits[0, 0])
                    head = getattr(model, "score", None)
                    scores = (head(output.hidden_states[-1][0])[:, 0].float()
                              if isinstance(head, torch.nn.Linear) else None)
            if mask is None:
                mask = torch.ones(inputs["input_ids"].shape[1], dtype=torch.bool)
            tokens = int(mask.sum())
            if scores is None:
                return RewardReading(end_score=end, token_mean=float("nan"), tokens=tokens)
            last = int(mask.nonzero().max())
            return RewardReading(end_score=float(scores[last]) if end is None else end,
                                 token_mean=float(scores[mask].mean()), tokens=tokens)

    def _head_scores(self, model: Any, inputs: dict[str, Any]) -> Any:
        output = model(**inputs, **({} if self._from_base else {"output_hidden_states": True}))
        hidden = output.last_hidden_state if self._from_base else output.hidden_states[-1]
        weight, bias = self._head
        scores = hidden[0].float() @ weight[0]
        return scores + bias[0] if bias is not None else scores

    def _check_parts(self, media: Sequence[Part]) -> None:
        if any(part.modality is Modality.TEXT for part in media):
            raise ValueError("media holds a text part: pass the response text as `text`")
        self.check({part.modality for part in media})

    def _encode(self, formatted: str, media: Sequence[Part]) -> Any:
        if not media:  # as reward_model always encoded text: the tokenizer, truncated at max_length
            return self.tokenizer(formatted, return_tensors="pt", truncation=True, max_length=self.max_length)
        from eval_anything.models.inputs import InputProcessor

        inputs = InputProcessor(self.processor, label=f"reward model {self.path}")
        ordered = [part for modality in MEDIA_ORDER for part in media if part.modality is modality]
        encoded = inputs.encode([formatted], [inputs.prepare(ordered)])
        length = int(encoded["input_ids"].shape[1])
        if length > self.max_length:  # cutting media tokens would break the processor's count
            raise UsageError(f"reward model {self.path}: the input is {length} tokens with its media, "
                             f"more than max_length {self.max_length}")
        return encoded

    # ------------------------------------------------------------------ loading

    def _config_loaded(self) -> Any:
        if self._config is None:
            from transformers import AutoConfig

            self._config = AutoConfig.from_pretrained(self.path)
        return self._config

    def _auto_names(self) -> tuple[str, ...]:
        return BASE_CLASSES if self.head_kind == HEAD_SCORE else ("AutoModelForSequenceClassification",)

    def _model_class(self) -> type | None:
        """The class the first Auto class maps this config to (the loaded one once loaded)."""
        if self._model is not None:
            return type(self._model)
        import transformers

        config = self._config_loaded()
        for name in self._auto_names():
            mapping = getattr(getattr(transformers, name, None), "_model_mapping", None)
            try:
                if mapping is not None and type(config) in mapping:
                    return mapping[type(config)]
            except (KeyError, ValueError, ImportError, AttributeError):
                continue
        return None

    def _loaded(self) -> Any:
        if self._model is None:
            import torch
            import transformers

            transformers.utils.logging.disable_progress_bar()
            if self.head_kind == HEAD_SCORE:
                self._head = self._read_head()
            errors = []
            for name in self._auto_names():
                auto = getattr(transformers, name, None)
                if auto is None:
                    continue
                try:
                    model, info = auto.from_pretrained(self.path, dtype=torch.float32, output_loading_info=True)
                except ValueError as exc:  # "Unrecognized configuration class" for this Auto class
                    errors.append(f"{name}: {exc}".splitlines()[0])
                    continue
                if info.get("missing_keys"):  # its weights are not all in the folder: random parts
                    missing = sorted(info["missing_keys"])
                    errors.append(f"{name} ({type(model).__name__}): weights missing from the folder: "
                                  + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
                    continue
                if self.head_kind == HEAD_SCORE:
                    hidden = model.config.get_text_config().hidden_size
                    if self._head[0].shape[1] != hidden:
                        raise UsageError(f"{self.path / SCORE_HEAD_FILE}: weight has {self._head[0].shape[1]} "
                                         f"columns, the model's hidden size is {hidden}")
                elif getattr(model.config.get_text_config(), "pad_token_id", None) is None:  # as reward_model did
                    model.config.get_text_config().pad_token_id = self.tokenizer.pad_token_id or self.tokenizer.eos_token_id
                self._from_base = name == "AutoModel"
                self._model = model.to("cpu").eval()
                break
            if self._model is None:
                what = ("a model for the score head" if self.head_kind == HEAD_SCORE else
                        f"a sequence-classification model (and it has no {SCORE_HEAD_FILE})")
                raise UsageError(f"reward model {self.path}: no class loads {what}:\n  " + "\n  ".join(errors))
        return self._model

    def _read_head(self) -> tuple[Any, Any]:
        import torch
        from safetensors.torch import load_file

        file = self.path / SCORE_HEAD_FILE
        tensors = load_file(file)
        weight, bias = tensors.pop("weight", None), tensors.pop("bias", None)
        if tensors:
            raise UsageError(f"{file}: unexpected tensors {sorted(tensors)} (only weight and bias)")
        if weight is None or weight.dim() != 2 or weight.shape[0] != 1:
            shape = None if weight is None else list(weight.shape)
            raise UsageError(f"{file}: needs a weight of shape [1, hidden_size], has {shape}")
        if bias is not None and bias.numel() != 1:
            raise UsageError(f"{file}: bias must have shape [1], has {list(bias.shape)}")
        return weight.to(torch.float32), None if bias is None else bias.reshape(1).to(torch.float32)

    def describe(self) -> dict[str, Any]:
        """Path, model class, head kind, the modalities it takes and their placeholders."""
        taken = self.input_modalities
        model_class = self._model_class()
        described: dict[str, Any] = {
            "path": str(self.path), "class": model_class.__name__ if model_class else None, "head": self.head_kind,
            "input_modalities": sorted(m.value for m in taken),
            "placeholders": {m.value: self._placeholders[m] for m in MEDIA_ORDER if m in taken},
            "max_length": self.max_length, **self.weights.identity()}
        if self.head_kind == HEAD_SCORE:
            described["head_file"] = SCORE_HEAD_FILE
        return described


def _class_takes(model_class: type | None, modality: Modality) -> bool:
    """Whether the class's forward() names an argument for the medium (unknown class: yes)."""
    if model_class is None:
        return True
    try:
        names = list(inspect.signature(model_class.forward).parameters)
    except (TypeError, ValueError):
        return True
    return any(word in name for name in names for word in _FORWARD_ARGUMENTS[modality])


def _placeholder(processor: Any, modality: Modality) -> str | None:
    """The processor's own text for one part of `modality`: what its chat template writes for the
    part (cut to the run of special tokens, so "Audio 1: <|audio_bos|>...\\n" gives
    "<|audio_bos|><|AUDIO|><|audio_eos|>"), else its token attributes (image_token, audio_token
    and the begin/end tokens around them)."""
    return _template_placeholder(processor, modality) or _attribute_placeholder(processor, modality)


def _template_placeholder(processor: Any, modality: Modality) -> str | None:
    if not getattr(processor, "chat_template", None):
        return None

    def render(content: list[dict[str, Any]]) -> str:
        return processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False)

    try:
        bare = render([{"type": "text", "text": _PROBE}])
        marked = render([{"type": modality.value}, {"type": "text", "text": _PROBE}])
    except Exception:  # a template that wants more of the part, or none for this layout
        return None
    prefix = 0
    while prefix < min(len(bare), len(marked)) and bare[prefix] == marked[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(bare), len(marked)) - prefix and bare[-1 - suffix] == marked[-1 - suffix]:
        suffix += 1
    inserted = marked[prefix:len(marked) - suffix]
    tokenizer = getattr(processor, "tokenizer", processor)
    specials = set(tokenizer.get_added_vocab()) | set(getattr(tokenizer, "all_special_tokens", ()))
    spans = [(i, i + len(token)) for token in specials if token and token in inserted
             for i in range(len(inserted)) if inserted.startswith(token, i)]
    if not spans:
        return None
    return inserted[min(s for s, _ in spans):max(e for _, e in spans)]


def _attribute_placeholder(processor: Any, modality: Modality) -> str | None:
    token_name, starts, ends = _TOKEN_ATTRIBUTES[modality]
    tokenizer = getattr(processor, "tokenizer", processor)

    def named(names: Sequence[str]) -> str:
        for name in names:
            for source in (processor, tokenizer):
                value = getattr(source, name, None)
                if isinstance(value, str) and value:
                    return value
        return ""

    token = named([token_name])
    return named(starts) + token + named(ends) if token else None
