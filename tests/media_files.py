"""Small media files written by tests: a solid-colour PNG and a sine-tone WAV."""
from __future__ import annotations

from pathlib import Path


def write_png(path: Path, colour: tuple[int, int, int] = (255, 0, 0), size: int = 16) -> Path:
    from PIL import Image

    Image.new("RGB", (size, size), colour).save(path)
    return path


def write_wav(path: Path, seconds: float = 0.5, hz: float = 440.0, rate: int = 16000) -> Path:
    import numpy as np
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * hz * t)).astype("float32"), rate)
    return path
