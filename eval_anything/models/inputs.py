"""Input processing shared by every local transformers model: the `hf` and `vllm` backends, the
reward-model judges and `eval_anything.align` load a folder's processor here and turn request parts
into the same prompts, media tokens, frame samples and resampled audio."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from eval_anything.datamodel import Modality, Part
from eval_anything.errors import UsageError
from eval_anything.media import load_audio, load_image, load_video_frames

PART_LOADERS = {"image_processor": "AutoImageProcessor", "feature_extractor": "AutoFeatureExtractor",
                "tokenizer": "AutoTokenizer"}
"""Processor part -> the Auto class that loads it from a model folder."""


@dataclass
class PreparedInput:
    """A request turned into chat content and decoded media, ready for the processor."""

    content: list[dict[str, Any]]
    images: list[Any] = field(default_factory=list)
    videos: list[Any] = field(default_factory=list)
    audios: list[Any] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


class InputProcessor:
    """Request parts -> chat content and decoded media -> rendered prompt -> processor tensors.

    The one input path for local transformers models: the `hf` and `vllm` backends use it to
    evaluate, the reward models to score and `eval_anything.align` to build training examples, so
    all see the same prompts, media tokens, frame sampling and audio resampling.
    """

    def __init__(self, processor: Any, video_frames: int = 8, label: str = "model") -> None:
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.video_frames = video_frames
        self.label = label

    def prepare(self, parts: Sequence[Part]) -> PreparedInput:
        prepared = PreparedInput(content=[])
        for part in parts:
            self._add_part(prepared, part)
        return prepared

    def _add_part(self, prepared: PreparedInput, part: Part) -> None:
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

    def render(self, prepared: PreparedInput, prompt_text: str, system: str | None = None,
               history: Sequence[Any] = ()) -> str:
        """The chat-template prompt, ending where the assistant's answer starts. `history`: earlier
        turns (Request.history), before the user turn; the media then go into the first user turn."""
        messages = self.messages(prepared, prompt_text, system, history)
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if prepared.images or prepared.videos or prepared.audios:
            raise UsageError(f"{self.label} has no chat template to place media tokens in the prompt")
        return "\n".join(filter(None, [system, *(turn.text for turn in history), prompt_text]))

    def messages(self, prepared: PreparedInput, prompt_text: str, system: str | None = None,
                 history: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The chat messages `render` applies the template to."""
        messages: list[dict[str, Any]] = []
        if self.text_only:
            if system:
                messages.append({"role": "system", "content": system})
            messages.extend({"role": turn.role, "content": turn.text} for turn in history)
            messages.append({"role": "user", "content": prompt_text})
            return messages
        # multimodal templates expect list content; many iterate it even for the system turn
        if system:
            messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
        if not history:
            messages.append({"role": "user", "content": prepared.content})
            return messages
        media = [item for item in prepared.content if item["type"] != "text"]
        for index, turn in enumerate(history):
            messages.append({"role": turn.role, "content": (media if index == 0 else [])
                             + [{"type": "text", "text": turn.text}]})
        messages.append({"role": "user", "content": [{"type": "text", "text": prompt_text}]})
        return messages

    def encode(self, texts: list[str], prepared: list[PreparedInput], padding_side: str = "left") -> Any:
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


def load_processor(transformers: Any, path: Path, trust_remote_code: bool = False) -> Any:
    """The model folder's processor; its tokenizer alone for a text-only model. `path` is a folder:
    a Hub id is resolved first (`weights.resolve_weights`)."""
    has_processor = any((path / name).exists() for name in
                        ("processor_config.json", "preprocessor_config.json", "feature_extractor_config.json"))
    if has_processor:
        try:
            return transformers.AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
        except (ImportError, AttributeError, ValueError, OSError):
            # e.g. a video processor that needs torchvision: keep the other parts, else the tokenizer
            processor = _processor_without_video(transformers, path)
            if processor is not None:
                return processor
    return transformers.AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)


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
    return accepting_no_video(processor_class)(**parts, video_processor=None, chat_template=template)


def accepting_no_video(processor_class: type) -> type:
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


def input_modalities_of(processor: Any) -> frozenset[Modality]:
    """The modalities a processor turns into model inputs."""
    found = {Modality.TEXT}
    if getattr(processor, "image_processor", None) is not None:
        found |= {Modality.IMAGE, Modality.VIDEO}  # video as sampled frames
    if getattr(processor, "feature_extractor", None) is not None:
        found.add(Modality.AUDIO)
    return frozenset(found)
