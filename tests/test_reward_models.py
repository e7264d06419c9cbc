"""Multimodal reward models (eval_anything.judges.reward_models): tiny random LLaVA, Qwen2-Audio and
Qwen2.5-Omni-thinker folders with a random score head, a tiny Gemma3ForSequenceClassification and a
text-only LlamaForSequenceClassification. Each reading is checked against the prompt the original
synergy scorer builds and against scores computed here from the model's own hidden states."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from eval_anything.datamodel import Modality, Part
from eval_anything.judges.reward import RewardModelScorer, reward_model
from eval_anything.judges.reward_models import (HEAD_SCORE, HEAD_SEQUENCE_CLASSIFICATION, SCORE_HEAD_FILE,
                                                RewardModel, _attribute_placeholder, save_score_head, sigmoid)
from media_files import write_png, write_wav

PROMPT, ANSWER = "What do you see and hear?", "A red square and a tone."
WAV_RATE = 22050  # not the feature extractors' 16 kHz: the reward model must resample
IMAGE = "<image>"
AUDIO = "<|audio_bos|><|AUDIO|><|audio_eos|>"
OMNI_IMAGE = "<|vision_bos|><|IMAGE|><|vision_eos|>"
GEMMA_IMAGE = "<start_of_image>"


def linked_copy(source: Path, target: Path) -> Path:
    """`source`'s files linked into `target` (the session fixtures stay untouched)."""
    target.mkdir(parents=True)
    for file in source.iterdir():
        os.symlink(file, target / file.name)
    return target


def random_head(directory: Path, seed: int, bias: bool = True) -> tuple[list[float], float]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(1, 64, generator=generator)
    offset = torch.randn(1, generator=generator) if bias else None
    save_score_head(directory, weight, offset)
    return weight[0].tolist(), float(offset) if bias else 0.0


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Part]:
    folder = tmp_path_factory.mktemp("reward-media")
    return {"red": Part.of_file("image", write_png(folder / "red.png", (220, 20, 20), 40)),
            "blue": Part.of_file("image", write_png(folder / "blue.png", (20, 20, 220), 40)),
            "tone": Part.of_file("audio", write_wav(folder / "tone.wav", 1.0, 440.0, WAV_RATE)),
            "chirp": Part.of_file("audio", write_wav(folder / "chirp.wav", 1.0, 2500.0, WAV_RATE))}


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_llava_dir, tiny_qwen2_audio_dir, tiny_qwen2_5_omni_dir, smollm2_dir):
    """name -> (folder, head weight and bias or None, the class that reads hidden states here)."""
    from tiny_models import make_tiny_gemma3_reward

    root = tmp_path_factory.mktemp("reward-models")
    found = {}
    for seed, (name, source, auto) in enumerate([("llava", tiny_llava_dir, "AutoModelForImageTextToText"),
                                                 ("qwen2_audio", tiny_qwen2_audio_dir, "AutoModelForMultimodalLM"),
                                                 ("omni", tiny_qwen2_5_omni_dir, "AutoModelForMultimodalLM")]):
        folder = linked_copy(source, root / name)
        found[name] = (folder, random_head(folder, seed, bias=name != "qwen2_audio"), auto)
    found["gemma3"] = (make_tiny_gemma3_reward(root / "gemma3", smollm2_dir), None,
                       "AutoModelForSequenceClassification")
    return found


@pytest.fixture(scope="module")
def readers(models) -> dict[str, RewardModel]:
    return {name: RewardModel(folder) for name, (folder, _, _) in models.items()}


CASES = {  # name -> (media given, in this order; the placeholders the text must hold, image first)
    "llava": (("red",), IMAGE),
    "qwen2_audio": (("tone",), AUDIO),
    "omni": (("tone", "red"), OMNI_IMAGE + AUDIO),  # given audio first: the text still puts the image first
    "gemma3": (("red",), GEMMA_IMAGE),
}


def manual_reading(models, name: str, text: str, parts: list[Part]) -> tuple[float, float, int]:
    """(end score, token mean, tokens) computed here: the processor on `text` and the media,
    the model's last hidden states (output_hidden_states) and the head's weights."""
    import numpy as np
    import soundfile
    import soxr
    import torch
    import transformers
    from PIL import Image

    from eval_anything.models.inputs import load_processor

    folder, head, auto = models[name]
    processor = load_processor(transformers, folder)
    model = getattr(transformers, auto).from_pretrained(folder, dtype=torch.float32).eval()
    kwargs = {"text": [text], "return_tensors": "pt"}
    images = [Image.open(p.path).convert("RGB") for p in parts if p.modality is Modality.IMAGE]
    audios = []
    for part in parts:
        if part.modality is Modality.AUDIO:
            samples, rate = soundfile.read(part.path, dtype="float32")
            audios.append(soxr.resample(samples, rate, 16000).astype(np.float32))
    if images:
        kwargs["images"] = images
    if audios:
        kwargs.update(audio=audios, sampling_rate=16000)
    encoded = processor(**kwargs)
    with torch.no_grad():
        output = model(**encoded, output_hidden_states=True)
        hidden = output.hidden_states[-1][0]
        if head is None:  # sequence classification: its own score layer and its pooled logit
            scores = model.score(hidden)[:, 0]
            assert float(output.logits[0, 0]) == pytest.approx(float(scores[-1]), abs=1e-5)
        else:
            weight, bias = head
            scores = hidden @ torch.tensor(weight) + bias
    return float(scores[-1]), float(scores.mean()), len(scores)


@pytest.fixture()
def processor_calls(monkeypatch):
    """Records what each reward model's processor is called with."""
    calls: list[dict] = []

    def watch(reader: RewardModel) -> None:
        cls = type(reader.processor)
        original = cls.__call__

        def recording(self, *args, **kwargs):
            calls.append(kwargs)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__call__", recording)

    return calls, watch


@pytest.mark.parametrize("name", list(CASES))
def test_the_processor_gets_the_originals_prompt_with_the_models_own_placeholders(name, readers, media,
                                                                                   processor_calls):
    calls, watch = processor_calls
    reader = readers[name]
    given, placeholders = CASES[name]
    parts = [media[key] for key in given]
    watch(reader)
    reader.read(PROMPT, ANSWER, parts)

    expected = f"USER: {PROMPT}\nASSISTANT:\n{placeholders}{ANSWER}"
    assert reader.format_text(PROMPT, ANSWER, parts) == expected
    assert [call["text"] for call in calls] == [[expected]]
    images = calls[0].get("images", [])
    audios = calls[0].get("audio", [])
    assert len(images) == sum(p.modality is Modality.IMAGE for p in parts)
    assert len(audios) == sum(p.modality is Modality.AUDIO for p in parts)
    if audios:  # 1 s at 22.05 kHz, resampled to the feature extractor's rate
        assert calls[0]["sampling_rate"] == 16000 and len(audios[0]) == 16000
    # with no media, the original's text alone
    assert reader.format_text(PROMPT, ANSWER) == f"USER: {PROMPT}\nASSISTANT:\n{ANSWER}"


@pytest.mark.parametrize("name", list(CASES))
def test_end_score_and_token_mean_match_the_hidden_states_through_the_head(name, models, readers, media):
    given, placeholders = CASES[name]
    parts = [media[key] for key in given]
    reading = readers[name].read(PROMPT, ANSWER, parts)
    ordered = sorted(parts, key=lambda p: p.modality is Modality.AUDIO)  # images first, as the text
    end, mean, tokens = manual_reading(models, name, f"USER: {PROMPT}\nASSISTANT:\n{placeholders}{ANSWER}", ordered)
    assert reading.end_score == pytest.approx(end, abs=1e-4)
    assert reading.token_mean == pytest.approx(mean, abs=1e-4)
    assert reading.tokens == tokens
    assert reading.end_sigmoid == pytest.approx(sigmoid(end), abs=1e-6)
    assert reading.token_mean_sigmoid == pytest.approx(1 / (1 + math.exp(-mean)), abs=1e-6)
    assert reading.end_score != pytest.approx(reading.token_mean)  # two different numbers
    described = readers[name].describe()
    assert described["head"] == (HEAD_SEQUENCE_CLASSIFICATION if name == "gemma3" else HEAD_SCORE)
    assert described["class"] == {"llava": "LlavaModel", "qwen2_audio": "Qwen2AudioModel",
                                  "omni": "Qwen2_5OmniThinkerModel",
                                  "gemma3": "Gemma3ForSequenceClassification"}[name]


@pytest.mark.parametrize("name, swaps", [("llava", [("red", "blue")]), ("qwen2_audio", [("tone", "chirp")]),
                                         ("omni", [("red", "blue"), ("tone", "chirp")]),
                                         ("gemma3", [("red", "blue")])])
def test_a_different_medium_gives_a_different_score(name, swaps, readers, media):
    given = CASES[name][0]
    first = readers[name].read(PROMPT, ANSWER, [media[key] for key in given])
    bare = readers[name].read(PROMPT, ANSWER)
    assert bare.tokens < first.tokens  # the media's tokens are read and counted
    assert abs(bare.end_score - first.end_score) > 1e-4
    for old, new in swaps:
        other = readers[name].read(PROMPT, ANSWER, [media[new if key == old else key] for key in given])
        assert other.tokens == first.tokens
        assert abs(other.end_score - first.end_score) > 1e-4
        assert abs(other.token_mean - first.token_mean) > 1e-5


def test_unsupported_media_fail_clearly_before_any_weights_load(models, media):
    taken = {"llava": {"text", "image"}, "qwen2_audio": {"text", "audio"},
             "omni": {"text", "image", "audio"}, "gemma3": {"text", "image"}}
    for name, (folder, _, _) in models.items():
        reader = RewardModel(folder)
        assert {m.value for m in reader.input_modalities} == taken[name]
        refused = [m for m in (Modality.IMAGE, Modality.AUDIO, Modality.VIDEO) if m.value not in taken[name]]
        for modality in refused:
            with pytest.raises(ValueError, match=rf"reward model {folder} does not take {modality.value} input"):
                reader.check([modality])
            part = media["tone"] if modality is Modality.AUDIO else Part.of_file(modality, media["red"].path)
            with pytest.raises(ValueError, match=rf"{folder} does not take {modality.value}"):
                reader.read(PROMPT, ANSWER, [part])
        assert reader._model is None  # refused from the config and processor alone


def test_placeholders_from_processor_attributes_agree_with_the_chat_templates(readers):
    assert _attribute_placeholder(readers["llava"].processor, Modality.IMAGE) == IMAGE
    assert _attribute_placeholder(readers["qwen2_audio"].processor, Modality.AUDIO) == AUDIO
    assert _attribute_placeholder(readers["omni"].processor, Modality.IMAGE) == OMNI_IMAGE
    assert _attribute_placeholder(readers["omni"].processor, Modality.AUDIO) == AUDIO
    assert readers["omni"].placeholder("audio") == AUDIO
    assert readers["gemma3"].placeholder(Modality.IMAGE) == GEMMA_IMAGE


def test_bad_layouts_are_refused(models, tmp_path):
    source = models["llava"][0]
    wrong = linked_copy(source, tmp_path / "wrong-head")
    (wrong / SCORE_HEAD_FILE).unlink()
    save_score_head(wrong, [[0.5] * 32])  # hidden size is 64
    with pytest.raises(ValueError, match=r"score_head.safetensors: weight has 32 columns.*hidden size is 64"):
        RewardModel(wrong).read(PROMPT, ANSWER)
    headless = linked_copy(source, tmp_path / "no-head")
    (headless / SCORE_HEAD_FILE).unlink()
    reader = RewardModel(headless)
    assert reader.head_kind == HEAD_SEQUENCE_CLASSIFICATION
    with pytest.raises(ValueError, match=rf"reward model {headless}: no class loads a sequence-classification"):
        reader.read(PROMPT, ANSWER)
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        RewardModel(tmp_path)


def test_a_text_only_sequence_classification_reward_model_still_reads_as_before(tmp_path, smollm2_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tiny_models import make_tiny_llama_reward

    folder = make_tiny_llama_reward(tmp_path / "rm", smollm2_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()

    def manual(text: str) -> tuple[float, float, int]:
        encoded = tokenizer(text, return_tensors="pt", truncation=True, max_length=1024)
        with torch.no_grad():
            output = model(**encoded, output_hidden_states=True)
            scores = model.score(output.hidden_states[-1][0])[:, 0]
        return float(output.logits[0, 0]), float(scores.mean()), len(scores)

    text = f"USER: {PROMPT}\nASSISTANT:\n{ANSWER}"
    end, mean, tokens = manual(text)
    scorer = reward_model(str(folder))
    assert scorer.reward(PROMPT, ANSWER) == pytest.approx(end, abs=1e-5)
    custom = RewardModelScorer(str(folder), text_format="Q: {prompt} A: {response}")
    assert custom.reward(PROMPT, ANSWER) == pytest.approx(manual(f"Q: {PROMPT} A: {ANSWER}")[0], abs=1e-5)
    assert custom.reward(PROMPT, ANSWER) != pytest.approx(end)

    reader = RewardModel(folder)
    reading = reader.read(PROMPT, ANSWER)
    assert (reading.end_score, reading.tokens) == (pytest.approx(end, abs=1e-5), tokens)
    assert reading.token_mean == pytest.approx(mean, abs=1e-5)
    assert reader.input_modalities == {Modality.TEXT}
    assert reader.describe() == {"path": str(folder), "class": "LlamaForSequenceClassification",
                                 "head": HEAD_SEQUENCE_CLASSIFICATION, "input_modalities": ["text"],
                                 "placeholders": {}, "max_length": 2048}
    with pytest.raises(ValueError, match=rf"{folder} does not take image input \(it takes text\)"):
        reader.read(PROMPT, ANSWER, [Part.of_file("image", write_png(tmp_path / "x.png"))])
