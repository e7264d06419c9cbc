"""Generators render an answer's media instructions into media files, per modality
(`--generator audio=espeak,image=textcard,video=model:replay:made.jsonl`). Built in:

- `espeak` (audio): offline text-to-speech with espeak-ng (apt package espeak-ng);
- `textcard` (image, video): the instruction's words drawn on a card with Pillow (a video shows the
  card for two seconds with a growing bar, encoded with PyAV);
- `model:SPEC` (any modality): any model the harness runs (`replay:FILE.jsonl`, `hf:DIR`, `openai:NAME`...)
  is sent the instruction and the first output part of the modality is taken;
- `diffusers:DIR` (image, audio, video): a local diffusers pipeline folder (`pip install diffusers`);
  the pipeline class in DIR/model_index.json picks what it makes, with the Align-Anything paper's
  settings as defaults:
  - image: any text-to-image pipeline, a PNG. FluxPipeline (the paper's FLUX.1-schnell): steps=4,
    guidance=0, max_sequence_length=256, seed=0; other pipelines: steps=25, guidance=7.5, seed=0;
    `size` (square side) and `max_sequence_length` unset are the pipeline's own;
  - audio: AudioLDM2Pipeline, steps=200, seconds=10, guidance=3.5 (AudioLDM2's own), seed=0, a
    16-bit WAV at the vocoder's sampling rate (16 kHz for AudioLDM2; 16 kHz when none is given);
  - video: CogVideoXPipeline, steps=50, frames=49, guidance=6, seed=42, fps=8, an H.264 MP4 (PyAV);
    `height`/`width` unset are the pipeline's own (480x720), `max_sequence_length` the transformer's.
  Every kind takes `seed`, `device` (default cuda when available) and `dtype` (float32, float16 or
  bfloat16; default float32); noise is drawn on the CPU, so a seed gives the same noise anywhere.
  A pipeline asked for a modality it does not make is an error naming the folder and its class.

`espeak` and `textcard` are crude, deterministic baselines: they say or show the instruction's words,
so they measure whether an answer's instructions carry the requested content, not media quality;
their describe() says `"baseline": True`. Every generator's describe() gives the settings that
shape its media (name, pipeline class, steps, size, sample rate, seconds, frames, fps, seed,
guidance...), which the run manifest records under "generators".
Arguments follow the name as `NAME:REFERENCE;key=value;...` (e.g. `diffusers:./sd;steps=20;size=512`).
Add one with `generators.register(NAME, factory)`, a factory taking the text after `NAME:` and
returning a Generator."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar

from eval_anything.datamodel import GenerationConfig, Modality, Part, Request
from eval_anything.errors import UsageError
from eval_anything.media import to_wav_bytes, write_mp4
from eval_anything.models.weights import ResolvedWeights, resolve_weights
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
            raise UsageError(f"generator {self.name!r} makes {self.modality.value}, not {modality.value}")
        return self

    def describe(self) -> dict[str, Any]:
        """The settings that shape what this generator makes, for the run manifest. A crude baseline
        that says or shows the instruction's words instead of making real media has `"baseline": True`."""
        return {"name": self.name}


def split_options(options: str) -> tuple[str, dict[str, Any]]:
    """`REFERENCE;key=value;...` -> the reference and its arguments (numbers and booleans converted)."""
    from eval_anything.models.base import parse_model_args

    reference, *pairs = options.split(";")
    return reference.strip(), parse_model_args(",".join(pairs))


ESPEAK_SPEED = 160  # words per minute


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

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "baseline": True, "voice": self.voice, "words_per_minute": ESPEAK_SPEED,
                "binary": Path(self.binary).name if self.binary else None}

    def render(self, instruction: str, target: Path) -> Path:
        if self.binary is None:
            raise GeneratorError("espeak-ng is not installed (apt-get install espeak-ng)")
        target.parent.mkdir(parents=True, exist_ok=True)
        command = [self.binary, "-v", self.voice, "-s", str(ESPEAK_SPEED), "-w", str(target), instruction[:2000]]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
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
            raise UsageError(f"the textcard generator takes no options, got {options!r}")

    @property
    def name(self) -> str:
        return "textcard"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "baseline": True, "size": CARD_SIZE}

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

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "baseline": True, "size": VIDEO_SIZE, "fps": VIDEO_FPS, "frames": VIDEO_FRAMES}

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
            raise UsageError("the model generator needs a model: model:SPEC (e.g. model:replay:media.jsonl)")
        self.options = options
        self.modality, self.suffix = modality, SUFFIXES[modality]
        reference, args = split_options(options)
        self.model = model or LazyModel(resolve_spec(reference, args))

    @property
    def name(self) -> str:
        return f"model:{self.model.spec.label}"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model.spec.describe()}

    def for_modality(self, modality: Modality) -> Generator:
        if modality not in SUFFIXES:
            raise UsageError(f"the model generator makes media, not {modality.value}")
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


# --- diffusers: local pipelines for image, audio and video ----------------------------------------

DTYPES = ("float32", "float16", "bfloat16")


class DiffusersGenerator(Generator):
    """A local diffusers pipeline folder (`diffusers:DIR;key=value;...`), run seeded so that a rerun
    makes the same media. The pipeline class that DIR's model_index.json names picks the kind:
    one subclass per kind, each naming the classes it runs (none: any class no other kind claims),
    its options as name -> (type, default) (a None default is the pipeline's own) and the defaults
    that differ for particular classes. Loading, seeding, options and describe() are shared here;
    a kind says only what it passes the pipeline and how its output becomes a file. Noise is drawn
    on the CPU, so a seed draws the same noise on any device."""

    pipeline_classes: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[dict[str, tuple[type, Any]]] = {}
    class_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    common: ClassVar[dict[str, tuple[type, Any]]] = {"seed": (int, 0), "device": (str, None), "dtype": (str, None)}

    def __init__(self, directory: str, pipeline_class: str, args: dict[str, Any],
                 weights: ResolvedWeights | None = None) -> None:
        self.directory, self.pipeline_class = directory, pipeline_class
        self.weights = weights or resolve_weights(directory)
        """Where the pipeline is: `directory` itself, or the Hub snapshot of a pipeline id (ORG/NAME[@REV])."""
        options = {**self.common, **self.options}
        unknown = sorted(set(args) - set(options))
        if unknown:
            raise UsageError(f"unknown arguments for the diffusers {self.modality.value} generator of {directory} "
                             f"(a {pipeline_class}): {unknown}; it takes {sorted(options)}")
        values = {key: default for key, (_, default) in options.items()}
        values.update(self.class_defaults.get(pipeline_class, {}))
        values.update(args)
        self.settings = {key: _typed(key, values[key], kind) for key, (kind, _) in options.items()}
        if self.settings["dtype"] not in (None, *DTYPES):
            raise UsageError(f"diffusers generator dtype must be one of {', '.join(DTYPES)}, "
                             f"not {self.settings['dtype']!r}")
        self._pipeline: Any = None

    @classmethod
    def from_options(cls, options: str) -> "DiffusersGenerator":
        """`DIR;key=value;...` -> the kind of generator that DIR's pipeline class makes."""
        directory, args = split_options(options)
        if not directory:
            raise UsageError("the diffusers generator needs a pipeline folder: diffusers:DIR")
        # a misconfiguration fails the run before any model loads, not every sample
        weights = resolve_weights(directory)
        pipeline_class = _pipeline_class(weights.path)
        if importlib.util.find_spec("diffusers") is None:
            raise UsageError("the diffusers generator needs diffusers: pip install 'eval-anything[diffusers]'")
        kind = next((k for k in DIFFUSERS_KINDS if pipeline_class in k.pipeline_classes), DiffusersImageGenerator)
        return kind(directory, pipeline_class, args, weights)

    @property
    def name(self) -> str:
        return f"diffusers:{self.directory}"

    def for_modality(self, modality: Modality) -> Generator:
        if modality is not self.modality:
            wanted = [k for k in DIFFUSERS_KINDS if k.modality is modality]
            runs = ", ".join(c for k in wanted for c in k.pipeline_classes) or "text-to-image pipelines"
            raise UsageError(f"{self.directory} holds a {self.pipeline_class}, which the diffusers generator runs "
                             f"for {self.modality.value}, not {modality.value} (for {modality.value} it runs {runs})")
        return self

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "pipeline": self.pipeline_class, "modality": self.modality.value, **self.settings,
                **self.weights.identity()}

    def pipeline(self) -> Any:
        if self._pipeline is None:
            self._pipeline = _load_pipeline(self.weights.path, self.settings["device"], self.settings["dtype"])
        return self._pipeline

    def render(self, instruction: str, target: Path) -> Path:
        import torch

        generator = torch.Generator(device="cpu").manual_seed(self.settings["seed"])
        output = self.pipeline()(instruction, generator=generator, **self.call_arguments())
        target.parent.mkdir(parents=True, exist_ok=True)
        self.write(output, target)
        return target

    @abstractmethod
    def call_arguments(self) -> dict[str, Any]:
        """The pipeline call's arguments besides the prompt and the seeded generator."""

    @abstractmethod
    def write(self, output: Any, target: Path) -> None:
        """The pipeline's output as a file at `target`."""


class DiffusersImageGenerator(DiffusersGenerator):
    """A text-to-image pipeline (any class the other kinds do not claim), its first image as a PNG.
    A FluxPipeline gets the paper's FLUX.1-schnell settings (4 steps, guidance 0, 256 T5 tokens);
    other pipelines 25 steps at guidance 7.5. `size` is the square side (None: the pipeline's own);
    `max_sequence_length` is passed only when set (pipelines with a T5 encoder take it)."""

    modality = Modality.IMAGE
    suffix = ".png"
    options = {"steps": (int, 25), "guidance": (float, 7.5), "size": (int, None), "max_sequence_length": (int, None)}
    class_defaults = {"FluxPipeline": {"steps": 4, "guidance": 0.0, "max_sequence_length": 256}}

    def call_arguments(self) -> dict[str, Any]:
        size, length = self.settings["size"], self.settings["max_sequence_length"]
        return {"num_inference_steps": self.settings["steps"], "guidance_scale": self.settings["guidance"],
                **({"height": size, "width": size} if size else {}),
                **({"max_sequence_length": length} if length else {})}

    def write(self, output: Any, target: Path) -> None:
        output.images[0].save(target, format="PNG")


class DiffusersAudioGenerator(DiffusersGenerator):
    """AudioLDM2 text-to-audio with the paper's settings (200 steps, 10 s; guidance 3.5, the
    pipeline's own), a WAV at the vocoder's sampling rate (its config's `sampling_rate`, else
    16 kHz) as the original's scipy.io.wavfile.write(rate=16000). 16-bit PCM rather than the
    original's float samples: libsndfile's float WAV carries a PEAK chunk with the time of writing,
    so the same audio would not be the same bytes (the judge cache keys media by sha256); the
    vocoder's tanh keeps samples within [-1, 1], and judges get 16-bit PCM anyway."""

    modality = Modality.AUDIO
    suffix = ".wav"
    pipeline_classes = ("AudioLDM2Pipeline",)
    options = {"steps": (int, 200), "seconds": (float, 10.0), "guidance": (float, 3.5)}

    def __init__(self, directory: str, pipeline_class: str, args: dict[str, Any],
                 weights: ResolvedWeights | None = None) -> None:
        super().__init__(directory, pipeline_class, args, weights)
        self.sample_rate = _sample_rate(_component_config(self.weights.path, "vocoder"))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "sample_rate": self.sample_rate}

    def call_arguments(self) -> dict[str, Any]:
        return {"num_inference_steps": self.settings["steps"], "audio_length_in_s": self.settings["seconds"],
                "guidance_scale": self.settings["guidance"]}

    def write(self, output: Any, target: Path) -> None:
        import numpy as np

        vocoder = getattr(self.pipeline(), "vocoder", None)
        rate = _sample_rate(vocoder.config) if vocoder is not None else self.sample_rate
        target.write_bytes(to_wav_bytes(np.clip(np.asarray(output.audios[0], dtype=np.float32), -1.0, 1.0), rate))


class DiffusersVideoGenerator(DiffusersGenerator):
    """CogVideoX text-to-video with the paper's settings (50 steps, 49 frames, guidance 6, seed 42,
    8 fps as the original's export_to_video call), encoded as byte-stable H.264 with PyAV (diffusers'
    export_to_video needs imageio or OpenCV). `height`, `width` None: the pipeline's own (480x720);
    `max_sequence_length` None: the transformer's `max_text_seq_length` (226)."""

    modality = Modality.VIDEO
    suffix = ".mp4"
    pipeline_classes = ("CogVideoXPipeline",)
    options = {"steps": (int, 50), "frames": (int, 49), "guidance": (float, 6.0), "seed": (int, 42), "fps": (int, 8),
               "height": (int, None), "width": (int, None), "max_sequence_length": (int, None)}

    def __init__(self, directory: str, pipeline_class: str, args: dict[str, Any],
                 weights: ResolvedWeights | None = None) -> None:
        super().__init__(directory, pipeline_class, args, weights)
        if self.settings["max_sequence_length"] is None:
            config = _component_config(self.weights.path, "transformer")
            self.settings["max_sequence_length"] = int(config.get("max_text_seq_length", 226))

    def call_arguments(self) -> dict[str, Any]:
        sizes = {key: self.settings[key] for key in ("height", "width") if self.settings[key]}
        return {"num_inference_steps": self.settings["steps"], "num_frames": self.settings["frames"],
                "guidance_scale": self.settings["guidance"], "output_type": "np", **sizes,
                "max_sequence_length": self.settings["max_sequence_length"]}

    def write(self, output: Any, target: Path) -> None:
        import numpy as np

        # as diffusers' own float-to-PIL conversion: x255, rounded
        frames = (np.clip(np.asarray(output.frames[0]), 0.0, 1.0) * 255).round().astype(np.uint8)
        write_mp4(target, list(frames), self.settings["fps"])


DIFFUSERS_KINDS: tuple[type[DiffusersGenerator], ...] = (DiffusersImageGenerator, DiffusersAudioGenerator,
                                                        DiffusersVideoGenerator)


def _typed(key: str, value: Any, kind: type) -> Any:
    """An option's value as its type (int or float: a number, ints whole); None is the pipeline's own."""
    if value is None or kind is str:
        return value if value is None else str(value)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and (kind is float or float(value).is_integer()):
        return kind(value)
    wanted = "a whole number" if kind is int else "a number"
    raise UsageError(f"diffusers generator argument {key}={value!r} is not {wanted}")


def _pipeline_class(directory: Path) -> str:
    index = directory / "model_index.json"
    if not index.is_file():
        raise UsageError(f"{directory} is not a diffusers pipeline folder (no model_index.json)")
    try:
        return str(json.loads(index.read_text(encoding="utf-8"))["_class_name"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"{index} names no pipeline class (_class_name)") from None


def _component_config(directory: Path, component: str) -> dict[str, Any]:
    """A component's saved config (`DIR/COMPONENT/config.json`); {} when there is none."""
    try:
        config = json.loads((directory / component / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _sample_rate(config: Any) -> int:
    rate = config.get("sampling_rate") if isinstance(config, dict) else getattr(config, "sampling_rate", None)
    return int(rate or DEFAULT_SAMPLE_RATE)


DEFAULT_SAMPLE_RATE = 16000


def _load_pipeline(directory: Path, device: str | None, dtype: str | None = None) -> Any:
    import torch
    from diffusers import DiffusionPipeline

    pipeline = DiffusionPipeline.from_pretrained(str(directory), local_files_only=True,
                                                 **({"torch_dtype": getattr(torch, dtype)} if dtype else {}))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))


generators: Registry[Callable[[str], Generator]] = Registry("generator")
generators.register("espeak", EspeakGenerator)
generators.register("textcard", TextcardImageGenerator)
generators.register("model", ModelGenerator)
generators.register("diffusers", DiffusersGenerator.from_options)


def parse_generators(spec: str | None) -> dict[Modality, Generator]:
    """`image=NAME[:options],audio=espeak` -> a generator per modality."""
    chosen: dict[Modality, Generator] = {}
    for item in filter(None, (spec or "").split(",")):
        modality_name, sep, generator_spec = item.partition("=")
        if not sep:
            raise UsageError(f"generator {item!r} is not MODALITY=NAME (e.g. audio=espeak)")
        try:
            modality = Modality(modality_name.strip())
        except ValueError:
            raise UsageError(f"generator {item!r}: unknown modality {modality_name!r}") from None
        name, _, options = generator_spec.strip().partition(":")
        chosen[modality] = generators.get(name)(options).for_modality(modality)
    return chosen
