"""Generators render an answer's media instructions into media files, per modality
(`--generator audio=espeak,image=textcard,video=model:replay:made.jsonl`). Built in:

- `espeak` (audio): offline text-to-speech with espeak-ng (apt package espeak-ng);
- `textcard` (image, video): the instruction's words drawn on a card with Pillow (a video shows the
  card for two seconds with a growing bar, encoded with PyAV);
- `model:SPEC` (any modality): any model the harness runs (`replay:FILE.jsonl`, `hf:DIR`, `openai:NAME`...)
  is sent the instruction and the first output part of the modality is taken;
- `diffusers:DIR` (image): a local diffusers text-to-image pipeline folder (`pip install diffusers`).

`espeak` and `textcard` are crude, deterministic baselines: they say or show the instruction's words,
so they measure whether an answer's instructions carry the requested content, not media quality.
Arguments follow the name as `NAME:REFERENCE;key=value;...` (e.g. `diffusers:./sd;steps=20;size=512`).
Add one with `generators.register(NAME, factory)`, a factory taking the text after `NAME:` and
returning a Generator."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

from eval_anything.datamodel import GenerationConfig, Modality, Part, Request
from eval_anything.media import write_mp4
from eval_anything.registry import Registry

SUFFIXES = {Modality.IMAGE: ".png", Modality.AUDIO: ".wav", Modality.VIDEO: ".mp4"}


class GeneratorError(RuntimeError):
    """A generator could not render an instruction."""


class Generator(ABC):
    modality: Modality
    suffix: str

    @property
    def name(self) -> str:
        return type(self).__name__

    @abstractmethod
    def render(self, instruction: str, target: Path) -> Path:
        """Write media for `instruction` to `target` (its suffix is `self.suffix`) and return it."""

    def for_modality(self, modality: Modality) -> "Generator":
        """This generator set up to make `modality`; one that makes several modalities picks here."""
        if modality is not self.modality:
            raise ValueError(f"generator {self.name!r} makes {self.modality.value}, not {modality.value}")
        return self


def split_options(options: str) -> tuple[str, dict[str, Any]]:
    """`REFERENCE;key=value;...` -> the reference and its arguments (numbers and booleans converted)."""
    from eval_anything.models.base import parse_model_args

    reference, *pairs = options.split(";")
    return reference.strip(), parse_model_args(",".join(pairs))


class EspeakGenerator(Generator):
    """Speaks the instruction with espeak-ng: crude, but offline and deterministic."""

    modality = Modality.AUDIO
    suffix = ".wav"

    def __init__(self, options: str = "") -> None:
        self.binary = shutil.which("espeak-ng") or shutil.which("espeak")
        self.voice = options or "en"

    @property
    def name(self) -> str:
        return f"espeak:{self.voice}"

    def render(self, instruction: str, target: Path) -> Path:
        if self.binary is None:
            raise GeneratorError("espeak-ng is not installed (apt-get install espeak-ng)")
        target.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run([self.binary, "-v", self.voice, "-s", "160", "-w", str(target), instruction[:2000]],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0 or not target.exists():
            raise GeneratorError(f"espeak-ng failed: {result.stderr.strip()[:300]}")
        return target


# --- textcard: the instruction's words on a card ------------------------------------------------

CARD_SIZE = 256
VIDEO_SIZE, VIDEO_FPS, VIDEO_FRAMES = 128, 4, 8


def draw_card(text: str, size: int) -> "Any":
    """Black words on white, wrapped to the card, in Pillow's embedded font."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), "white")
    font = _font(max(8, size // 16))
    line_height = font.getbbox("Ag")[3] + 3
    lines = _wrap(text.split(), font, size - 12)[: (size - 12) // line_height]
    ImageDraw.Draw(image).multiline_text((6, 6), "\n".join(lines), fill="black", font=font, spacing=3)
    return image


def _font(size: int) -> "Any":
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def _wrap(words: list[str], font: "Any", width: int) -> list[str]:
    lines: list[str] = []
    for word in words:
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


class TextcardImageGenerator(Generator):
    """A crude, deterministic image baseline: the instruction's words drawn on a white card."""

    modality = Modality.IMAGE
    suffix = ".png"

    def __init__(self, options: str = "") -> None:
        if options:  # one fixed look, so that baseline scores compare across runs
            raise ValueError(f"the textcard generator takes no options, got {options!r}")

    @property
    def name(self) -> str:
        return "textcard"

    def render(self, instruction: str, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        draw_card(instruction, CARD_SIZE).save(target, format="PNG", optimize=True)  # no metadata chunks
        return target

    def for_modality(self, modality: Modality) -> Generator:
        return TextcardVideoGenerator() if modality is Modality.VIDEO else super().for_modality(modality)


class TextcardVideoGenerator(Generator):
    """A crude, deterministic video baseline: the instruction's card for two seconds, a bar growing
    along its foot so that frames differ."""

    modality = Modality.VIDEO
    suffix = ".mp4"

    @property
    def name(self) -> str:
        return "textcard"

    def render(self, instruction: str, target: Path) -> Path:
        import numpy as np

        card = np.asarray(draw_card(instruction, VIDEO_SIZE))
        frames = []
        for index in range(VIDEO_FRAMES):
            frame = card.copy()
            frame[-6:, : VIDEO_SIZE * (index + 1) // VIDEO_FRAMES] = (40, 90, 200)
            frames.append(frame)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_mp4(target, frames, VIDEO_FPS)
        return target


# --- model: any harness model that outputs media ------------------------------------------------

class ModelGenerator(Generator):
    """Sends the instruction to a harness model (`model:SPEC`, SPEC as for `--model`, its arguments
    after `;`) and keeps the first output part of the wanted modality. The request's task is
    `generate_MODALITY` and its sample id the media file's stem (`SAMPLE_VARIANT_MODALITY`, with
    `_rREPEAT` before the modality for repeats after the first), which
    is what a `replay:` predictions file of media made elsewhere is keyed by."""

    def __init__(self, options: str, modality: Modality = Modality.IMAGE, model: Any = None) -> None:
        from eval_anything.models import LazyModel, resolve_spec

        if not options:
            raise ValueError("the model generator needs a model: model:SPEC (e.g. model:replay:media.jsonl)")
        self.options = options
        self.modality, self.suffix = modality, SUFFIXES[modality]
        reference, args = split_options(options)
        self.model = model or LazyModel(resolve_spec(reference, args))

    @property
    def name(self) -> str:
        return f"model:{self.model.spec.label}"

    def for_modality(self, modality: Modality) -> Generator:
        if modality not in SUFFIXES:
            raise ValueError(f"the model generator makes media, not {modality.value}")
        return ModelGenerator(self.options, modality, self.model)  # one model shared by every modality

    def render(self, instruction: str, target: Path) -> Path:
        request = Request(task=f"generate_{self.modality.value}", sample_id=target.stem, variant=0,
                          parts=(Part.of_text(instruction),), generation=GenerationConfig(max_new_tokens=1024))
        (output,) = self.model.get().generate([request])
        if output.error:
            raise GeneratorError(f"the model failed: {output.error}")
        part = next((p for p in output.parts if p.modality is self.modality), None)
        if part is None:
            made = sorted({p.modality.value for p in output.parts}) or ["nothing"]
            raise GeneratorError(f"{self.model.spec.label} returned no {self.modality.value} "
                                 f"(it returned {', '.join(made)})")
        return _store(part, target)


def _store(part: Part, target: Path) -> Path:
    # the bytes are kept as made: the decoders read the content, not the suffix
    target.parent.mkdir(parents=True, exist_ok=True)
    if part.data is not None:
        target.write_bytes(part.data)
        return target
    try:
        shutil.copyfile(part.path or "", target)
    except OSError as exc:
        raise GeneratorError(f"cannot copy the model's {part.modality.value} {part.path}: {exc.strerror}") from None
    return target


# --- diffusers: a local text-to-image pipeline --------------------------------------------------

class DiffusersGenerator(Generator):
    """Runs a local diffusers text-to-image pipeline folder (`diffusers:DIR;steps=25;size=512;
    guidance=7.5;seed=0;device=cpu`), seeded so that a rerun draws the same image."""

    modality = Modality.IMAGE
    suffix = ".png"

    def __init__(self, options: str) -> None:
        self.directory, args = split_options(options)
        if not self.directory:
            raise ValueError("the diffusers generator needs a pipeline folder: diffusers:DIR")
        self.steps = int(args.pop("steps", 25))
        self.size = args.pop("size", None)
        self.guidance = float(args.pop("guidance", 7.5))
        self.seed = int(args.pop("seed", 0))
        self.device = args.pop("device", None)
        if args:
            raise ValueError(f"unknown diffusers generator arguments: {sorted(args)}")
        # a misconfiguration fails the run before any model loads, not every sample
        if not (Path(self.directory) / "model_index.json").is_file():
            raise ValueError(f"{self.directory} is not a diffusers pipeline folder (no model_index.json)")
        if importlib.util.find_spec("diffusers") is None:
            raise ValueError("the diffusers generator needs diffusers: pip install 'eval-anything[diffusers]'")
        self._pipeline = None

    @property
    def name(self) -> str:
        return f"diffusers:{self.directory}"

    def pipeline(self) -> Any:
        if self._pipeline is None:
            self._pipeline = _load_pipeline(Path(self.directory), self.device)
        return self._pipeline

    def render(self, instruction: str, target: Path) -> Path:
        import torch

        pipeline = self.pipeline()
        size = {"height": int(self.size), "width": int(self.size)} if self.size else {}
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        image = pipeline(instruction, num_inference_steps=self.steps, guidance_scale=self.guidance,
                         generator=generator, **size).images[0]
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, format="PNG")
        return target


def _load_pipeline(directory: Path, device: str | None) -> Any:
    import torch
    from diffusers import DiffusionPipeline

    pipeline = DiffusionPipeline.from_pretrained(str(directory), local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))


generators: Registry[Callable[[str], Generator]] = Registry("generator")
generators.register("espeak", EspeakGenerator)
generators.register("textcard", TextcardImageGenerator)
generators.register("model", ModelGenerator)
generators.register("diffusers", DiffusersGenerator)


def parse_generators(spec: str | None) -> dict[Modality, Generator]:
    """`image=NAME[:options],audio=espeak` -> a generator per modality."""
    chosen: dict[Modality, Generator] = {}
    for item in filter(None, (spec or "").split(",")):
        modality_name, sep, generator_spec = item.partition("=")
        if not sep:
            raise ValueError(f"generator {item!r} is not MODALITY=NAME (e.g. audio=espeak)")
        try:
            modality = Modality(modality_name.strip())
        except ValueError:
            raise ValueError(f"generator {item!r}: unknown modality {modality_name!r}") from None
        name, _, options = generator_spec.strip().partition(":")
        chosen[modality] = generators.get(name)(options).for_modality(modality)
    return chosen
