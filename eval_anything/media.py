"""Decoding media parts: images with Pillow, audio with soundfile (+ soxr), video with PyAV;
and encoding them (WAV, PNG, byte-stable H.264).

Every decoding failure raises MediaError naming the file, so one bad item errors alone.
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


STABLE_X264 = "bframes=0:mbtree=0:rc-lookahead=0"
"""x264 settings for byte-stable videos: with B-frames, lookahead and MB-tree, about one encode in
75 came out different (the encoder read memory it had not written); without them 300 of 300
encodes under a perturbed heap were identical."""


def yuv420p_frame(array: "Any") -> "Any":
    """An RGB array as a yuv420p frame whose every byte, row padding included, is defined.

    FFmpeg allocates planes with rows padded to the SIMD alignment (a 24-px chroma row is stored
    in 32 bytes) and leaves the padding uninitialised; libx264 reads some of it, so encoding a frame
    straight from ``from_ndarray(..., "rgb24")`` gives bytes that change from process to process.
    Here the visible pixels come from swscale and the padding repeats each row's last pixel.
    """
    import av
    import numpy as np

    converted = av.VideoFrame.from_ndarray(array, format="rgb24").reformat(format="yuv420p")
    frame = av.VideoFrame(converted.width, converted.height, "yuv420p")
    for source, target in zip(converted.planes, frame.planes):
        rows = np.frombuffer(memoryview(source), dtype=np.uint8).reshape(source.height, source.line_size)
        padded = np.pad(rows[:, : source.width], ((0, 0), (0, target.line_size - target.width)), mode="edge")
        target.update(np.ascontiguousarray(padded[: target.height]))
    return frame


def write_mp4(path: Path, frames: "list[Any]", fps: int, x264_params: str | None = STABLE_X264) -> None:
    """RGB frames as H.264 in an MP4 whose bytes are the same on every run with the same libx264:
    one thread (multithreaded x264 is not guaranteed bit-exact), fully defined frames and, unless
    `x264_params` says otherwise, the settings of STABLE_X264."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"crf": "18", "preset": "medium", "threads": "1",
                          **({"x264-params": x264_params} if x264_params else {})}
        for index, array in enumerate(frames):
            frame = yuv420p_frame(array)
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
