"""Decoding media parts: images with Pillow, audio with soundfile (+ soxr), video with PyAV.

Every failure raises MediaError naming the file, so one bad item errors alone.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from eval_anything.datamodel import Modality, Part


class MediaError(ValueError):
    """A media part could not be read or decoded."""


def _describe(part: Part) -> str:
    return part.path if part.path is not None else f"<{len(part.data or b'')} inline bytes>"


def _source(part: Part) -> Any:
    return io.BytesIO(part.data) if part.data is not None else part.path


def read_bytes(part: Part) -> bytes:
    if part.data is not None:
        return part.data
    try:
        return Path(part.path or "").read_bytes()
    except OSError as exc:
        raise MediaError(f"cannot read {part.modality.value} file {part.path}: {exc.strerror}") from None


def load_image(part: Part) -> "Any":
    from PIL import Image

    try:
        with Image.open(_source(part)) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise MediaError(f"image file {part.path} does not exist") from None
    except Exception as exc:
        raise MediaError(f"cannot decode image {_describe(part)}: {exc}") from None


def load_audio(part: Part, sampling_rate: int | None = None) -> tuple["Any", int]:
    """Mono float32 samples, resampled to `sampling_rate` when given."""
    import numpy as np
    import soundfile

    try:
        samples, rate = soundfile.read(_source(part), dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise MediaError(f"audio file {part.path} does not exist") from None
    except Exception as exc:
        raise MediaError(f"cannot decode audio {_describe(part)}: {exc}") from None
    mono = samples.mean(axis=1).astype(np.float32)
    if sampling_rate and rate != sampling_rate:
        import soxr

        mono = soxr.resample(mono, rate, sampling_rate).astype(np.float32)
        rate = sampling_rate
    return mono, rate


def load_video_frames(part: Part, num_frames: int) -> list["Any"]:
    """`num_frames` frames sampled uniformly over the clip, as RGB PIL images."""
    import av

    try:
        with av.open(_source(part)) as container:
            frames = [frame.to_image() for frame in container.decode(video=0)]
    except FileNotFoundError:
        raise MediaError(f"video file {part.path} does not exist") from None
    except Exception as exc:
        raise MediaError(f"cannot decode video {_describe(part)}: {exc}") from None
    if not frames:
        raise MediaError(f"video {_describe(part)} has no frames")
    if len(frames) <= num_frames:
        return frames
    step = len(frames) / num_frames
    return [frames[int(step * i + step / 2)] for i in range(num_frames)]


def to_wav_bytes(samples: "Any", rate: int) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def to_png_bytes(image: "Any") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_data_uri(image: "Any") -> str:
    return "data:image/png;base64," + base64.b64encode(to_png_bytes(image)).decode()


