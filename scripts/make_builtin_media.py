#!/usr/bin/env python
"""Write the media and data files of the small built-in multimodal tasks.

Run from anywhere:

    python scripts/make_builtin_media.py            # writes eval_anything/tasks/builtin/data/
    python scripts/make_builtin_media.py --out DIR  # writes somewhere else (e.g. to compare two runs)

What it writes, under the output folder:

- ``shapes/color_NN.png`` (12): one circle, square or triangle in red, green, blue or yellow on
  white, 64x64; ``shapes_color.jsonl`` asks for its colour (4 options, correct letter balanced
  over A-D).
- ``shapes/count_NN.png`` (12): 1-4 non-overlapping shapes (one per quadrant), 64x64;
  ``shapes_count.jsonl`` asks how many.
- ``tones/tones_NN.wav`` (16): 16 kHz mono PCM16, 1-4 sine beeps of 0.15 s with 10 ms fades and
  0.15-0.25 s silent gaps, at most 1.45 s; ``tones_count.jsonl`` asks how many beeps.
- ``motion/motion_NN.mp4`` (12): 48x48, 8 frames at 8 fps, libx264/yuv420p, a coloured square
  moving left, right, up or down; ``motion_direction.jsonl`` asks which way (4 options).

Everything is derived from fixed seeds (``random.Random(seed)``); nothing depends on the time,
the machine's locale or the network. The folders ``shapes/``, ``tones/`` and ``motion/`` belong to
this script and are emptied before writing; other files in the output folder are left alone.

Reproducibility: with the same library versions, two runs write byte-identical files (checked
with sha256 over every file). PNGs come from Pillow with no metadata, WAVs from the standard
library ``wave`` module, and the MP4s from libx264 run single-threaded with no timestamps in the
container, fed frames whose row padding is filled in (FFmpeg leaves it uninitialised and x264
reads it, which made the MP4 bytes differ between processes though the decoded frames did not;
see ``eval_anything.media.yuv420p_frame``). Across *different* versions of libx264/FFmpeg the MP4 bytes may differ (the encoder
writes its version into the stream and its decisions can change), and across numpy/libm builds a
WAV sample could in principle differ by one least-significant bit; the decoded frames, and the
answers, do not depend on either.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import wave
from pathlib import Path

import numpy as np

from eval_anything import media

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "eval_anything" / "tasks" / "builtin" / "data"
LETTERS = "ABCD"

COLOURS = {
    "red": (220, 30, 30),
    "green": (20, 160, 40),
    "blue": (30, 70, 225),
    "yellow": (245, 200, 0),
}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = ("left", "right", "up", "down")

SAMPLE_RATE = 16_000


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def balanced_letters(n: int, rng: random.Random) -> list[int]:
    """n answer positions spread evenly over A-D, in a shuffled order."""
    positions = [i % len(LETTERS) for i in range(n)]
    rng.shuffle(positions)
    return positions


def options_with_answer(answer: str, pool: tuple[str, ...] | list[str], position: int, rng: random.Random) -> list[str]:
    """All of pool in a shuffled order, with `answer` at index `position`."""
    others = [c for c in pool if c != answer]
    rng.shuffle(others)
    others.insert(position, answer)
    return others


# ---------------------------------------------------------------- shapes (PNG)

def draw_shape(draw, kind: str, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    if kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    elif kind == "triangle":
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=colour)
    else:
        raise ValueError(kind)


def save_png(image, path: Path) -> None:
    # No metadata chunks; optimize picks the zlib settings deterministically.
    image.save(path, format="PNG", optimize=True)


def make_shapes(out: Path) -> None:
    from PIL import Image, ImageDraw

    folder = out / "shapes"
    folder.mkdir()
    size = 64

    # Colour: one shape per image, every (colour, shape) pair once.
    rng = random.Random(1001)
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    rng.shuffle(pairs)
    positions = balanced_letters(len(pairs), rng)
    rows = []
    for index, ((colour, kind), position) in enumerate(zip(pairs, positions)):
        side = rng.randint(28, 40)
        x0 = rng.randint(4, size - 4 - side)
        y0 = rng.randint(4, size - 4 - side)
        image = Image.new("RGB", (size, size), "white")
        draw_shape(ImageDraw.Draw(image), kind, (x0, y0, x0 + side, y0 + side), COLOURS[colour])
        name = f"color_{index:02d}.png"
        save_png(image, folder / name)
        choices = options_with_answer(colour, tuple(COLOURS), position, rng)
        rows.append({"id": f"color_{index:02d}", "image": f"shapes/{name}",
                     "question": "What colour is the shape in the image?",
                     "choices": choices, "answer": LETTERS[position], "shape": kind})
    write_jsonl(out / "shapes_color.jsonl", rows)

    # Count: 1-4 shapes, each in its own quadrant so none overlap; three images per count.
    rng = random.Random(1002)
    counts = [1, 2, 3, 4] * 3
    rng.shuffle(counts)
    rows = []
    half = size // 2
    for index, count in enumerate(counts):
        image = Image.new("RGB", (size, size), "white")
        draw = ImageDraw.Draw(image)
        quadrants = rng.sample([(0, 0), (half, 0), (0, half), (half, half)], count)
        for qx, qy in sorted(quadrants):
            side = rng.randint(16, 22)
            x0 = qx + rng.randint(3, half - 3 - side)
            y0 = qy + rng.randint(3, half - 3 - side)
            draw_shape(draw, rng.choice(SHAPES), (x0, y0, x0 + side, y0 + side), COLOURS[rng.choice(list(COLOURS))])
        name = f"count_{index:02d}.png"
        save_png(image, folder / name)
        rows.append({"id": f"count_{index:02d}", "image": f"shapes/{name}",
                     "question": "How many shapes are in the image?", "answer": str(count)})
    write_jsonl(out / "shapes_count.jsonl", rows)


# ---------------------------------------------------------------- tones (WAV)

def beep(freq: float, seconds: float = 0.15, fade: float = 0.01, amplitude: float = 0.5) -> np.ndarray:
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    tone = amplitude * np.sin(2.0 * np.pi * freq * t)
    k = int(round(fade * SAMPLE_RATE))
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(k, dtype=np.float64) / k)  # raised cosine 0 -> 1
    tone[:k] *= ramp
    tone[n - k:] *= ramp[::-1]
    return tone


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * SAMPLE_RATE)), dtype=np.float64)


def write_wav(path: Path, signal: np.ndarray) -> None:
    pcm = np.clip(np.round(signal * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SAMPLE_RATE)
        handle.writeframes(pcm.tobytes())


def make_tones(out: Path) -> None:
    folder = out / "tones"
    folder.mkdir()
    rng = random.Random(2001)
    counts = [1, 2, 3, 4] * 4
    rng.shuffle(counts)
    freqs = (440.0, 523.25, 587.33, 659.25, 698.46, 783.99, 880.0)
    rows = []
    for index, count in enumerate(counts):
        freq = rng.choice(freqs)
        pieces = [silence(0.05)]
        for i in range(count):
            if i:
                pieces.append(silence(rng.choice((0.15, 0.18, 0.2, 0.22, 0.25))))
            pieces.append(beep(freq))
        pieces.append(silence(0.05))
        signal = np.concatenate(pieces)
        assert len(signal) <= 2 * SAMPLE_RATE
        name = f"tones_{index:02d}.wav"
        write_wav(folder / name, signal)
        rows.append({"id": f"tones_{index:02d}", "audio": f"tones/{name}",
                     "question": "How many beeps do you hear?", "answer": str(count), "frequency_hz": freq})
    write_jsonl(out / "tones_count.jsonl", rows)


# ---------------------------------------------------------------- motion (MP4)

VIDEO_SIZE = 48
FRAMES = 8
FPS = 8
SQUARE = 12


def motion_frames(direction: str, colour: tuple[int, int, int], offset: int) -> list[np.ndarray]:
    """The square travels 4 px per frame from one edge to the other; `offset` is its other coordinate."""
    travel = [4 + 4 * i for i in range(FRAMES)]  # 4 .. 32, so the square stays inside 48 px
    if direction in ("left", "up"):
        travel = travel[::-1]
    frames = []
    for pos in travel:
        frame = np.full((VIDEO_SIZE, VIDEO_SIZE, 3), 255, dtype=np.uint8)
        x, y = (pos, offset) if direction in ("left", "right") else (offset, pos)
        frame[y:y + SQUARE, x:x + SQUARE] = colour
        frames.append(frame)
    return frames


def write_mp4(path: Path, frames: list[np.ndarray]) -> None:
    # these files predate STABLE_X264; their default x264 settings keep the shipped bytes
    media.write_mp4(path, frames, FPS, x264_params=None)


def make_motion(out: Path) -> None:
    folder = out / "motion"
    folder.mkdir()
    rng = random.Random(3001)
    directions = list(DIRECTIONS) * 3
    rng.shuffle(directions)
    positions = balanced_letters(len(directions), rng)
    colour_names = list(COLOURS)
    # Distinct offsets per direction, so no two videos are the same.
    offsets = {d: rng.sample((6, 10, 14, 18, 22, 26, 30), directions.count(d)) for d in DIRECTIONS}
    rows = []
    for index, (direction, position) in enumerate(zip(directions, positions)):
        colour = colour_names[index % len(colour_names)]
        offset = offsets[direction].pop()
        name = f"motion_{index:02d}.mp4"
        write_mp4(folder / name, motion_frames(direction, COLOURS[colour], offset))
        choices = options_with_answer(direction, DIRECTIONS, position, rng)
        rows.append({"id": f"motion_{index:02d}", "video": f"motion/{name}",
                     "question": "In which direction does the square move?",
                     "choices": choices, "answer": LETTERS[position], "colour": colour})
    write_jsonl(out / "motion_direction.jsonl", rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("shapes", "tones", "motion"):
        shutil.rmtree(out / sub, ignore_errors=True)
    make_shapes(out)
    make_tones(out)
    make_motion(out)
    total = sum(p.stat().st_size for sub in ("shapes", "tones", "motion") for p in (out / sub).iterdir())
    total += sum((out / f).stat().st_size for f in
                 ("shapes_color.jsonl", "shapes_count.jsonl", "tones_count.jsonl", "motion_direction.jsonl"))
    print(f"wrote {out} ({total / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
