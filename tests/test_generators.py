"""Generators: the textcard baselines, any harness model as a generator (end to end through a suite
task, with replayed media), and a local diffusers pipeline built tiny from configs."""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from eval_anything.datamodel import Modality, Part
from eval_anything.judges.engine import JudgeSettings
from eval_anything.media import load_image, load_video_frames
from eval_anything.models import ModelSpec, resolve_spec
from eval_anything.rundir import SampleLog
from eval_anything.runner import RunSettings, evaluate
from eval_anything.suite.generators import GeneratorError, parse_generators
from eval_anything.tasks import Catalog
from media_files import write_png
from stub_openai import StubServer, user_text
from test_suite_runs import MCQ, judge_reply, suite_task


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_parse_picks_a_generator_per_modality_and_refuses_mismatches(tmp_path):
    table = parse_generators("image=textcard,video=textcard,audio=model:replay:" + str(tmp_path / "m.jsonl"))
    assert {m: (g.name, g.suffix) for m, g in table.items()} == {
        Modality.IMAGE: ("textcard", ".png"), Modality.VIDEO: ("textcard", ".mp4"),
        Modality.AUDIO: (f"model:replay:{tmp_path / 'm.jsonl'}", ".wav")}
    with pytest.raises(ValueError, match="makes audio, not image"):
        parse_generators("image=espeak")
    with pytest.raises(ValueError, match="makes image, not audio"):
        parse_generators("audio=textcard")
    with pytest.raises(ValueError, match="needs a model"):
        parse_generators("image=model")
    with pytest.raises(ValueError, match="not a diffusers pipeline folder"):
        parse_generators(f"image=diffusers:{tmp_path}")


def test_textcards_are_deterministic_and_decode(tmp_path):
    table = parse_generators("image=textcard,video=textcard")
    words = "A red square above a blue circle, " * 6
    for modality, generator in table.items():
        first = generator.render(words, tmp_path / "a" / f"x{generator.suffix}")
        second = generator.render(words, tmp_path / "b" / f"x{generator.suffix}")
        assert sha(first) == sha(second), modality
    image = load_image(Part.of_file("image", tmp_path / "a" / "x.png"))
    assert image.size == (256, 256) and image.getextrema() == ((0, 255),) * 3  # words drawn on white
    frames = load_video_frames(Part.of_file("video", tmp_path / "a" / "x.mp4"), 8)
    assert len(frames) == 8 and frames[0].size == (128, 128) and frames[0].tobytes() != frames[-1].tobytes()
    other = table[Modality.IMAGE].render("something else", tmp_path / "c.png")
    assert sha(other) != sha(first.with_name("x.png"))


def test_model_generator_renders_through_a_replayed_model_end_to_end(tmp_path):
    folder = tmp_path / "suite"
    suite_task(folder, "amg_if_image", "amg_if_image.jsonl", [{"prompt_id": "p1", "prompt": "Draw a red square."},
                                                               {"prompt_id": "p2", "prompt": "Draw a cat."}])
    suite_task(folder, "amg_if_video", "amg_if_video.jsonl", [{"prompt_id": "v1", "prompt": "A ball.",
                                                               "questions": MCQ}])
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "p1", "text": "[[response]]: None\n[[image_instruction]]: a red square"},
        {"id": "p2", "text": "[[response]]: None\n[[image_instruction]]: a cat"},
        {"id": "v1", "text": "[[response]]: None\n[[video_instruction]]: a ball rolling"}]))
    made = tmp_path / "made.jsonl"  # the image model's outputs, keyed by SAMPLE_VARIANT_MODALITY
    made.write_text(json.dumps({"task": "generate_image", "id": "p1_0_image", "text": "done",
                                "media": [{"modality": "image", "path": str(write_png(tmp_path / "red.png"))}]})
                    + "\n" + json.dumps({"id": "p2_0_image", "text": "I only write words."}) + "\n")
    with StubServer(judge_reply) as server:
        spec = ModelSpec("openai", "stub-judge", {"base_url": server.base_url})
        settings = RunSettings(output_dir=tmp_path / "runs", generators=f"image=model:replay:{made},video=textcard",
                               judge=JudgeSettings(spec, cache_path=None))
        report = evaluate(resolve_spec(str(answers)), Catalog([folder]).resolve("test_amg_if_image,test_amg_if_video"),
                          settings)
        seen = [b for b in server.bodies if "Score it on four criteria" in user_text(b)]
    assert len(seen) == 1 and any(p["type"] == "image_url" for p in seen[0]["messages"][-1]["content"])
    image = {r["id"]: r for r in SampleLog(report.run_dir / "samples" / "test_amg_if_image.jsonl")}
    (part,) = [p for p in image["p1"]["outputs"][0]["parts"] if p["modality"] == "image"]
    assert Path(part["path"]).is_relative_to(report.run_dir) and sha(Path(part["path"])) == sha(tmp_path / "red.png")
    assert part["metadata"] == {"generator": f"model:replay:{made}", "instruction": "a red square"}
    assert image["p1"]["scores"]["judge_rating"]["value"] == pytest.approx(0.6)
    reason = image["p2"]["scores"]["judge_rating"]["not_applicable"]
    assert "returned no image (it returned text)" in reason
    video = report.results["tasks"]["test_amg_if_video"]["metrics"]["judge_media_mcq"]
    assert video["n"] == 1 and video["value"] == 0.5  # textcard frames reached the judge, which answered A, A


def test_model_generator_errors_are_generator_errors(tmp_path):
    made = tmp_path / "made.jsonl"
    made.write_text(json.dumps({"id": "x_0_audio", "error": "quota"}) + "\n")
    generator = parse_generators(f"audio=model:replay:{made}")[Modality.AUDIO]
    with pytest.raises(GeneratorError, match="the model failed: quota"):
        generator.render("a beep", tmp_path / "x_0_audio.wav")
    with pytest.raises(GeneratorError, match="no prediction"):
        generator.render("a beep", tmp_path / "y_0_audio.wav")


def tiny_diffusers_pipeline(folder: Path) -> Path:
    """A Stable-Diffusion-shaped pipeline of random weights: tiny UNet, VAE, CLIP text encoder and a
    CLIP tokenizer over a local letters-only vocabulary."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {t: i for i, t in enumerate(["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters)])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=8, norm_num_groups=4,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                cross_attention_dim=16, attention_head_dim=2)
    vae = AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=4, sample_size=32)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    pipeline = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer,
                                       scheduler=DDIMScheduler(clip_sample=False, steps_offset=1), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    pipeline.save_pretrained(folder / "pipeline")
    return folder / "pipeline"


@pytest.mark.skipif(importlib.util.find_spec("diffusers") is None,
                    reason="diffusers is not installed (pip install 'eval-anything[diffusers]')")
def test_diffusers_generator_runs_a_local_pipeline_reproducibly(tmp_path):
    directory = tiny_diffusers_pipeline(tmp_path)
    generator = parse_generators(f"image=diffusers:{directory};steps=2;size=32;guidance=1;device=cpu")[Modality.IMAGE]
    assert generator.name == f"diffusers:{directory}"
    first = generator.render("a red cat", tmp_path / "a.png")
    second = generator.render("a red cat", tmp_path / "b.png")
    assert load_image(Part.of_file("image", first)).size == (32, 32) and sha(first) == sha(second)
