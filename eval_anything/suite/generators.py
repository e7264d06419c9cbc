"""Generators render an answer's media instructions into media files, per modality
(`--generator audio=espeak,image=...`). Built in: `espeak` (offline text-to-speech, apt package
espeak-ng). Add one with `generators.register(NAME, factory)`, a factory taking the text after
`NAME:` in the spec and returning a Generator."""
from __future__ import annotations

import shutil
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable

from eval_anything.datamodel import Modality
from eval_anything.registry import Registry


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


generators: Registry[Callable[[str], Generator]] = Registry("generator")
generators.register("espeak", EspeakGenerator)


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
        generator = generators.get(name)(options)
        if generator.modality is not modality:
            raise ValueError(f"generator {name!r} makes {generator.modality.value}, not {modality.value}")
        chosen[modality] = generator
    return chosen
