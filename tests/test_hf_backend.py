"""The `hf` backend end to end, with real tokenizers and processors.

SmolLM2-135M-Instruct (the embedded model) covers text; tiny random LLaVA and Qwen2-Audio models
built from configs (tests/tiny_models.py) cover images, video-as-frames and audio. Their outputs
are gibberish, so media tests check what reached the model rather than what it said.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eval_anything.datamodel import GenerationConfig, Modality, Part, Request
from eval_anything.models.base import ModelSpec
from eval_anything.models.hf import HFModel
from tiny_models import AUDIO_SAMPLING_RATE, LLAVA_IMAGE_TOKENS

TEXT_PROMPTS = (
    "What is the capital of France?",
    "Name three colors.",
    "Write one sentence about the sea, mentioning waves, sand and the summer sun.",
)
GREEDY = GenerationConfig(max_new_tokens=16)
SHORT = GenerationConfig(max_new_tokens=4)


def request(*parts: Part, sample_id: str = "s", generation: GenerationConfig = SHORT,
            system: str | None = None) -> Request:
    return Request("test", sample_id, 0, parts, generation, system=system)


def text_request(prompt: str, sample_id: str = "s", generation: GenerationConfig = GREEDY) -> Request:
    return request(Part.of_text(prompt), sample_id=sample_id, generation=generation)


class GenerateSpy:
    """Wraps `model.model.generate`, recording the keyword inputs of every call."""

    def __init__(self, hf_model: HFModel, monkeypatch: pytest.MonkeyPatch, fail_above: int | None = None):
        self.calls: list[dict] = []
        self.fail_above = fail_above
        self._generate = hf_model.model.generate
        monkeypatch.setattr(hf_model.model, "generate", self)

    def __call__(self, **inputs):
        self.calls.append(inputs)
        if self.fail_above is not None and inputs["input_ids"].shape[0] > self.fail_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated)")
        return self._generate(**inputs)

    @property
    def batch_sizes(self) -> list[int]:
        return [call["input_ids"].shape[0] for call in self.calls]


# ---------------------------------------------------------------- media files written by the tests

def write_png(path: Path, seed: int, size: tuple[int, int] = (48, 40)) -> Path:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_wav(path: Path, seconds: float, rate: int, frequency: float = 440.0) -> Path:
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), rate)
    return path


def write_mp4(path: Path, frames: int, size: int = 32) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            pixels = np.full((size, size, 3), (i * 16) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ---------------------------------------------------------------- models, loaded once per module

@pytest.fixture(scope="module")
def smollm2(smollm2_dir: Path) -> HFModel:
    return HFModel(ModelSpec("hf", str(smollm2_dir), {}))


@pytest.fixture(scope="module")
def llava(tiny_llava_dir: Path) -> HFModel:
    return HFModel(ModelSpec("hf", str(tiny_llava_dir), {"video_frames": 4}))


@pytest.fixture(scope="module")
def qwen_audio(tiny_qwen2_audio_dir: Path) -> HFModel:
    return HFModel(ModelSpec("hf", str(tiny_qwen2_audio_dir), {}))


def token_count(hf_model: HFModel, token: str, input_ids: torch.Tensor) -> list[int]:
    token_id = hf_model.tokenizer.convert_tokens_to_ids(token)
    return (input_ids == token_id).sum(dim=1).tolist()


# ---------------------------------------------------------------- (g) declared input modalities

def test_input_modalities_and_model_classes(smollm2: HFModel, llava: HFModel, qwen_audio: HFModel) -> None:
    assert smollm2.input_modalities == {Modality.TEXT}
    assert llava.input_modalities == {Modality.TEXT, Modality.IMAGE, Modality.VIDEO}
    assert qwen_audio.input_modalities == {Modality.TEXT, Modality.AUDIO}
    assert type(smollm2.model).__name__ == "LlamaForCausalLM"
    assert type(llava.model).__name__ == "LlavaForConditionalGeneration"
    assert type(qwen_audio.model).__name__ == "Qwen2AudioForConditionalGeneration"
    assert type(llava.processor).__name__ == "LlavaProcessor"
    assert type(qwen_audio.processor).__name__ == "Qwen2AudioProcessor"
    assert llava.describe()["input_modalities"] == ["image", "text", "video"]


def test_text_only_model_fails_a_media_request_alone(smollm2: HFModel, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    spy = GenerateSpy(smollm2, monkeypatch)
    image = Part.of_file(Modality.IMAGE, write_png(tmp_path / "a.png", seed=1))
    [output] = smollm2.generate([request(image, Part.of_text("Describe."))])
    assert output.error is not None and "image" in output.error
    assert spy.calls == []


# ---------------------------------------------------------------- (a) text with SmolLM2

@pytest.fixture(scope="module")
def text_batch(smollm2: HFModel) -> tuple[list[Request], list]:
    """The three prompts generated as one batch (shared: SmolLM2 generation is the slow part here)."""
    requests = [text_request(p, sample_id=str(i)) for i, p in enumerate(TEXT_PROMPTS)]
    return requests, smollm2.generate(requests)


def test_text_batch_is_deterministic_and_matches_one_at_a_time(smollm2: HFModel, text_batch) -> None:
    requests, first = text_batch
    again = smollm2.generate(requests)
    alone = [smollm2.generate([r])[0] for r in requests]

    assert [o.error for o in first] == [None, None, None]
    assert [o.text for o in first] == [o.text for o in again]
    assert all(o.text for o in first)
    assert "Paris" in first[0].text  # order kept although the batch is sorted by length
    # Left padding (with position ids from the attention mask) keeps each batched row on the
    # single-row computation up to float rounding; for these prompts greedy text agrees on all rows.
    assert [o.text for o in first] == [o.text for o in alone]

    tokenizer = smollm2.tokenizer
    for prompt, output, single in zip(TEXT_PROMPTS, first, alone):
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                 add_generation_prompt=True, tokenize=False)
        expected_in = len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
        assert output.usage.input_tokens == expected_in == single.usage.input_tokens
        assert output.usage.output_tokens == single.usage.output_tokens
        assert 1 <= output.usage.output_tokens <= GREEDY.max_new_tokens
        assert output.raw_text.strip() == output.text
        assert output.latency_s > 0
    # the short answer ended on <|im_end|> before the limit, the long one ran to it
    assert first[0].usage.output_tokens < GREEDY.max_new_tokens
    assert first[2].usage.output_tokens == GREEDY.max_new_tokens


def test_stop_strings_cut_the_text(smollm2: HFModel, text_batch) -> None:
    requests, first = text_batch
    plain = first[2]
    words = plain.text.split()
    stop = words[len(words) // 2]
    config = GenerationConfig(max_new_tokens=GREEDY.max_new_tokens, stop=("never-appears", stop))
    [stopped] = smollm2.generate([text_request(TEXT_PROMPTS[2], generation=config)])

    cut = plain.raw_text.find(stop)
    assert stopped.text == plain.raw_text[:cut].strip()
    assert stopped.text and stop not in stopped.text
    assert stop in stopped.raw_text
    assert stopped.usage.output_tokens < plain.usage.output_tokens  # generation itself stopped early


def test_each_generation_config_gets_its_own_batch(llava: HFModel, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = GenerateSpy(llava, monkeypatch)
    two, five = GenerationConfig(max_new_tokens=2), GenerationConfig(max_new_tokens=5)
    outputs = llava.generate([request(Part.of_text("a"), generation=five), request(Part.of_text("b"), generation=two),
                              request(Part.of_text("c"), generation=five)])
    assert [o.error for o in outputs] == [None] * 3
    assert sorted(spy.batch_sizes) == [1, 2]
    assert sorted(call["max_new_tokens"] for call in spy.calls) == [2, 5]
    assert outputs[1].usage.output_tokens <= 2 < outputs[0].usage.output_tokens


# ---------------------------------------------------------------- (b) an image into tiny LLaVA

def test_image_reaches_llava(llava: HFModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = GenerateSpy(llava, monkeypatch)
    images = [write_png(tmp_path / f"{seed}.png", seed=seed) for seed in (1, 2)]
    outputs = [llava.generate([request(Part.of_file(Modality.IMAGE, p), Part.of_text("What is this?"))])[0]
               for p in images]

    assert [o.error for o in outputs] == [None, None]
    assert all(o.usage.output_tokens >= 1 for o in outputs)
    first, second = spy.calls
    for call, output in zip(spy.calls, outputs):
        assert call["pixel_values"].shape == (1, 3, 32, 32)
        assert call["pixel_values"].dtype == llava.model.dtype
        assert token_count(llava, "<image>", call["input_ids"]) == [LLAVA_IMAGE_TOKENS]
        assert output.usage.input_tokens == call["input_ids"].shape[1]  # expanded image tokens counted
    assert not torch.equal(first["pixel_values"], second["pixel_values"])
    # same prompt, different image: the model's next-token distribution moves with the pixels
    with torch.inference_mode():
        logits = [llava.model(**{k: v for k, v in c.items() if k in ("input_ids", "attention_mask", "pixel_values")})
                  .logits[0, -1] for c in spy.calls]
    assert torch.equal(first["input_ids"], second["input_ids"])
    assert not torch.allclose(logits[0], logits[1])


def test_pixel_values_follow_the_model_dtype(tiny_llava_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    model = HFModel(ModelSpec("hf", str(tiny_llava_dir), {"dtype": "bfloat16", "batch_size": 2}))
    spy = GenerateSpy(model, monkeypatch)
    image = Part.of_file(Modality.IMAGE, write_png(tmp_path / "a.png", seed=3))
    [output] = model.generate([request(image, Part.of_text("What is this?"))])
    assert output.error is None
    assert spy.calls[0]["pixel_values"].dtype == torch.bfloat16
    assert model.describe()["dtype"] == "bfloat16" and model.describe()["batch_size"] == 2


# ---------------------------------------------------------------- (c) a video as frames

def test_video_goes_in_as_sampled_frames(llava: HFModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = GenerateSpy(llava, monkeypatch)
    video = Part.of_file(Modality.VIDEO, write_mp4(tmp_path / "clip.mp4", frames=16))
    [output] = llava.generate([request(video, Part.of_text("What happens?"), system="Be brief.")])

    frames = llava.video_frames
    assert output.error is None
    assert output.metadata["video_as_frames"] == frames == 4
    [call] = spy.calls
    assert call["pixel_values"].shape == (frames, 3, 32, 32)
    assert token_count(llava, "<image>", call["input_ids"]) == [frames * LLAVA_IMAGE_TOKENS]
    # frames were sampled across the clip (they differ in brightness), not the first one repeated
    means = call["pixel_values"].mean(dim=(1, 2, 3))
    assert torch.all(means[1:] > means[:-1])
    assert "Be brief." in llava.tokenizer.decode(call["input_ids"][0])


# ---------------------------------------------------------------- (d) audio into tiny Qwen2-Audio

def test_audio_reaches_qwen2_audio_resampled(qwen_audio: HFModel, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    spy = GenerateSpy(qwen_audio, monkeypatch)
    at_16k = Part.of_file(Modality.AUDIO, write_wav(tmp_path / "a16k.wav", 1.0, AUDIO_SAMPLING_RATE))
    at_22k = Part.of_file(Modality.AUDIO, write_wav(tmp_path / "a22k.wav", 2.0, 22050))
    outputs = qwen_audio.generate([request(at_16k, Part.of_text("What do you hear?"), sample_id="16k"),
                                   request(at_22k, Part.of_text("And here?"), sample_id="22k")])

    assert [o.error for o in outputs] == [None, None]
    assert all(o.usage.output_tokens >= 1 for o in outputs)
    [call] = spy.calls  # one batch of two
    # the processor pads every clip to 30 s = 3000 mel frames (what the encoder requires) ...
    assert call["input_features"].shape == (2, 80, 3000)
    assert call["input_features"].dtype == qwen_audio.model.dtype
    # ... and counts the real frames: 25 audio tokens a second; 2 s at 22.05 kHz, resampled to
    # 16 kHz, is 50 (unresampled it would read as 2.76 s, 69 tokens). Rows may be reordered.
    frames = call["feature_attention_mask"].sum(dim=1).tolist()
    audio_tokens = token_count(qwen_audio, "<|AUDIO|>", call["input_ids"])
    assert sorted(zip(frames, audio_tokens)) == [(100, 25), (200, 50)]
    assert token_count(qwen_audio, "<|audio_bos|>", call["input_ids"]) == [1, 1]
    assert sorted(o.usage.input_tokens for o in outputs) == sorted(call["attention_mask"].sum(dim=1).tolist())
    # left padding: the shorter row starts with pads, and both rows end on the generation prompt
    lengths = call["attention_mask"].sum(dim=1)
    assert call["attention_mask"][lengths.argmin(), 0] == 0
    assert call["attention_mask"][:, -1].tolist() == [1, 1]


# ---------------------------------------------------------------- (e) one bad file in a batch

def test_corrupt_image_fails_only_its_request(llava: HFModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = GenerateSpy(llava, monkeypatch)
    good = [write_png(tmp_path / f"good{i}.png", seed=i) for i in range(2)]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    missing = tmp_path / "missing.png"
    paths = [good[0], corrupt, good[1], missing]
    outputs = llava.generate([request(Part.of_file(Modality.IMAGE, p), Part.of_text("Describe it."), sample_id=str(i))
                              for i, p in enumerate(paths)])

    assert len(outputs) == 4
    assert outputs[0].error is None and outputs[2].error is None
    assert outputs[0].usage.output_tokens >= 1 and outputs[2].usage.output_tokens >= 1
    assert outputs[1].error is not None and str(corrupt) in outputs[1].error
    assert outputs[3].error is not None and str(missing) in outputs[3].error
    assert spy.batch_sizes == [2]  # the good ones still went together
    assert spy.calls[0]["pixel_values"].shape[0] == 2


# ---------------------------------------------------------------- (f) auto batch size on OOM

def test_auto_batch_size_halves_on_out_of_memory(llava: HFModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llava, "_batch_size", 32)
    spy = GenerateSpy(llava, monkeypatch, fail_above=2)
    requests = [request(Part.of_text(f"Count to {i}."), sample_id=str(i)) for i in range(5)]
    outputs = llava.generate(requests)

    assert [o.error for o in outputs] == [None] * 5
    assert all(o.usage.output_tokens >= 1 for o in outputs)
    assert llava.batch_size <= 2
    assert spy.batch_sizes == [5, 2, 2, 1]  # halved from what failed, not from the start size of 32
    # the outputs are the same as generating each request alone
    alone = [llava.generate([r])[0] for r in requests]
    assert [o.text for o in outputs] == [o.text for o in alone]


def test_fixed_batch_size_does_not_hide_out_of_memory(tiny_llava_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = HFModel(ModelSpec("hf", str(tiny_llava_dir), {"batch_size": 4}))
    GenerateSpy(model, monkeypatch, fail_above=2)
    with pytest.raises(torch.OutOfMemoryError):
        model.generate([request(Part.of_text(f"Count to {i}."), sample_id=str(i)) for i in range(3)])
    assert model.batch_size == 4
