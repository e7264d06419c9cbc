"""Generators: the textcard baselines, any harness model as a generator (end to end through a suite
task, with replayed media, and recorded in the manifest), and local diffusers pipelines built tiny
from configs, with tokenizers built here (no hub): Stable Diffusion and FLUX images, AudioLDM2
audio, CogVideoX video."""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from eval_anything.datamodel import Modality, Part
from eval_anything.media import load_image, load_video_frames
from eval_anything.models import ModelSpec, resolve_spec
from eval_anything.rundir import SampleLog
from eval_anything.runner import evaluate
from eval_anything.settings import JudgeSettings, RunSettings
from eval_anything.suite.generators import (DiffusersAudioGenerator, DiffusersImageGenerator,
                                            DiffusersVideoGenerator, EspeakGenerator, GeneratorError,
                                            parse_generators)
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
        tasks = [t.under("extended") for t in Catalog([folder]).resolve("test_amg_if_image,test_amg_if_video")]
        report = evaluate(resolve_spec(str(answers)), tasks, settings)  # our protocol: tagged answers
        seen = [b for b in server.bodies if "Score it on four criteria" in user_text(b)]
    manifest = json.loads((report.run_dir / "manifest.json").read_text())
    assert manifest["generators"] == {  # what rendered the media, as set up
        "image": {"name": f"model:replay:{made}",
                  "model": {"backend": "replay", "reference": str(made), "args": {}}},
        "video": {"name": "textcard", "baseline": True, "size": 128, "fps": 4, "frames": 8}}
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


def tiny_clip_tokenizer(folder: Path):
    """A CLIP tokenizer over a local letters-only vocabulary."""
    from transformers import CLIPTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {t: i for i, t in enumerate(["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters)])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)


def tiny_diffusers_pipeline(folder: Path) -> Path:
    """A Stable-Diffusion-shaped pipeline of random weights: tiny UNet, VAE, CLIP text encoder and a
    CLIP tokenizer over a local letters-only vocabulary."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_clip_tokenizer(folder)
    vocab = tokenizer.get_vocab()
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


needs_diffusers = pytest.mark.skipif(importlib.util.find_spec("diffusers") is None,
                                     reason="diffusers is not installed (pip install 'eval-anything[diffusers]')")


@needs_diffusers
def test_diffusers_generator_runs_a_local_pipeline_reproducibly(tmp_path):
    directory = tiny_diffusers_pipeline(tmp_path)
    generator = parse_generators(f"image=diffusers:{directory};steps=2;size=32;guidance=1;device=cpu")[Modality.IMAGE]
    assert generator.name == f"diffusers:{directory}"
    assert generator.describe() == {"name": f"diffusers:{directory}", "pipeline": "StableDiffusionPipeline",
                                    "modality": "image", "steps": 2, "guidance": 1.0, "size": 32,
                                    "max_sequence_length": None, "seed": 0, "device": "cpu", "dtype": None}
    first = generator.render("a red cat", tmp_path / "a.png")
    second = generator.render("a red cat", tmp_path / "b.png")
    assert load_image(Part.of_file("image", first)).size == (32, 32) and sha(first) == sha(second)


# --- the generators' settings, and which kind a pipeline folder gets ----------------------------

def fake_pipeline_folder(folder: Path, pipeline_class: str, **components: dict) -> Path:
    """A folder with only model_index.json (and any component configs): enough to pick a kind."""
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": pipeline_class}))
    for name, config in components.items():
        (folder / name).mkdir()
        (folder / name / "config.json").write_text(json.dumps(config))
    return folder


@needs_diffusers
def test_diffusers_picks_the_kind_by_pipeline_class_with_the_papers_defaults(tmp_path):
    flux = fake_pipeline_folder(tmp_path / "flux", "FluxPipeline")
    sd = fake_pipeline_folder(tmp_path / "sd", "StableDiffusionPipeline")
    audio = fake_pipeline_folder(tmp_path / "audio", "AudioLDM2Pipeline")
    audio_24k = fake_pipeline_folder(tmp_path / "audio24", "AudioLDM2Pipeline", vocoder={"sampling_rate": 24000})
    video = fake_pipeline_folder(tmp_path / "video", "CogVideoXPipeline", transformer={"max_text_seq_length": 226})
    table = parse_generators(f"image=diffusers:{flux},audio=diffusers:{audio},video=diffusers:{video}")
    assert [type(g) for g in table.values()] == [DiffusersImageGenerator, DiffusersAudioGenerator,
                                                 DiffusersVideoGenerator]
    common = {"seed": 0, "device": None, "dtype": None}
    assert table[Modality.IMAGE].describe() == {  # FLUX.1-schnell's published settings
        "name": f"diffusers:{flux}", "pipeline": "FluxPipeline", "modality": "image", **common,
        "steps": 4, "guidance": 0.0, "max_sequence_length": 256, "size": None}
    assert table[Modality.AUDIO].describe() == {  # AudioLDM2: 200 steps, 10 s at 16 kHz
        "name": f"diffusers:{audio}", "pipeline": "AudioLDM2Pipeline", "modality": "audio", **common,
        "steps": 200, "seconds": 10.0, "guidance": 3.5, "sample_rate": 16000}
    assert table[Modality.VIDEO].describe() == {  # CogVideoX: 50 steps, 49 frames, guidance 6, seed 42, 8 fps
        "name": f"diffusers:{video}", "pipeline": "CogVideoXPipeline", "modality": "video", **common, "seed": 42,
        "steps": 50, "frames": 49, "guidance": 6.0, "fps": 8, "height": None, "width": None,
        "max_sequence_length": 226}
    other = parse_generators(f"image=diffusers:{sd}")[Modality.IMAGE].describe()
    assert (other["steps"], other["guidance"], other["max_sequence_length"]) == (25, 7.5, None)
    overridden = parse_generators(f"image=diffusers:{flux};steps=8;guidance=3.5;seed=7;dtype=bfloat16;size=512")
    assert {k: overridden[Modality.IMAGE].describe()[k] for k in ("steps", "guidance", "seed", "dtype", "size")} == {
        "steps": 8, "guidance": 3.5, "seed": 7, "dtype": "bfloat16", "size": 512}
    assert parse_generators(f"audio=diffusers:{audio_24k};seconds=4")[Modality.AUDIO].describe()["sample_rate"] == 24000


@needs_diffusers
def test_diffusers_refuses_a_modality_its_pipeline_cannot_make_and_bad_arguments(tmp_path):
    sd = fake_pipeline_folder(tmp_path / "sd", "StableDiffusionPipeline")
    audio = fake_pipeline_folder(tmp_path / "audio", "AudioLDM2Pipeline")
    with pytest.raises(ValueError, match=f"{sd} holds a StableDiffusionPipeline, .* for image, not video "
                                         r"\(for video it runs CogVideoXPipeline\)"):
        parse_generators(f"video=diffusers:{sd}")
    with pytest.raises(ValueError, match=f"{audio} holds a AudioLDM2Pipeline, .* for audio, not image"):
        parse_generators(f"image=diffusers:{audio}")
    with pytest.raises(ValueError, match=r"unknown arguments for the diffusers audio generator .*\['frames'\]"):
        parse_generators(f"audio=diffusers:{audio};frames=9")
    with pytest.raises(ValueError, match="steps=2.5 is not a whole number"):
        parse_generators(f"audio=diffusers:{audio};steps=2.5")
    with pytest.raises(ValueError, match="seconds='long' is not a number"):
        parse_generators(f"audio=diffusers:{audio};seconds=long")
    with pytest.raises(ValueError, match="dtype must be one of float32, float16, bfloat16"):
        parse_generators(f"audio=diffusers:{audio};dtype=float8")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text("{}")
    with pytest.raises(ValueError, match="names no pipeline class"):
        parse_generators(f"image=diffusers:{tmp_path / 'broken'}")


def test_crude_baselines_describe_themselves_as_baselines(tmp_path):
    table = parse_generators(f"image=textcard,video=textcard,audio=model:replay:{tmp_path / 'm.jsonl'}")
    assert table[Modality.IMAGE].describe() == {"name": "textcard", "baseline": True, "size": 256}
    assert table[Modality.VIDEO].describe() == {"name": "textcard", "baseline": True, "size": 128, "fps": 4,
                                                "frames": 8}
    assert "baseline" not in table[Modality.AUDIO].describe()  # a model's media are real media
    espeak = EspeakGenerator().describe()  # built without parse: espeak-ng need not be installed here
    assert espeak["baseline"] is True and espeak["name"] == "espeak:en" and espeak["voice"] == "en"


# --- real pipelines, tiny and random --------------------------------------------------------------

T5_PIECES = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-"


def tiny_t5_tokenizer(max_length: int):
    """A T5 (unigram) tokenizer over single characters, built here: no sentencepiece file, no hub."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0),
             *((c, -2.0) for c in T5_PIECES), *(("\u2581" + c, -1.5) for c in T5_PIECES)]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=max_length)


def tiny_roberta_tokenizer(max_length: int):
    """A RoBERTa (byte-level BPE) tokenizer over the 256 byte symbols and no merges, built here."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import RobertaTokenizer

    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>", *sorted(ByteLevel.alphabet())])}
    return RobertaTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def tiny_t5_encoder(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=16, d_ff=32, d_kv=8, num_heads=2, num_layers=1))


TINY_AUDIO_RATE = 8000
"""Not AudioLDM2's 16 kHz, so that the test sees the rate come from the vocoder's config."""


def tiny_audioldm2_pipeline(folder: Path) -> Path:
    """An AudioLDM2-shaped pipeline of random weights (after diffusers' own fast tests, smaller): CLAP
    and T5 text encoders, projection, GPT-2 language model, UNet, VAE over 8 mel bins, a HiFi-GAN vocoder
    (4 samples a mel frame at 8 kHz)."""
    import torch
    from diffusers import (AudioLDM2Pipeline, AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel,
                           AutoencoderKL, DDIMScheduler)
    from transformers import (ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig,
                              GPT2Config, GPT2LMHeadModel, SpeechT5HifiGan, SpeechT5HifiGanConfig)

    tokenizer, tokenizer_2 = tiny_roberta_tokenizer(16), tiny_t5_tokenizer(16)
    torch.manual_seed(0)
    unet = AudioLDM2UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4, norm_num_groups=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=([None, 16, 16], [None, 16, 16]), attention_head_dim=2)  # GPT-2's and T5's widths
    vae = AutoencoderKL(block_out_channels=(8, 16), in_channels=1, out_channels=1, norm_num_groups=4, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    text = ClapTextConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_attention_heads=2,
                          num_hidden_layers=1, projection_dim=16, max_position_embeddings=32,
                          bos_token_id=0, pad_token_id=1, eos_token_id=2)
    audio = ClapAudioConfig(spec_size=64, window_size=4, num_mel_bins=64, intermediate_size=32, depths=[1, 1],
                            num_attention_heads=[2, 2], num_hidden_layers=2, hidden_size=32, projection_dim=16,
                            patch_size=2, patch_stride=2, patch_embed_input_channels=4)
    clap = ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16))
    language_model = GPT2LMHeadModel(GPT2Config(n_embd=16, n_head=2, n_layer=1, vocab_size=len(tokenizer),
                                                n_positions=64, bos_token_id=0, eos_token_id=2))
    language_model.config.max_new_tokens = 4
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=8, sampling_rate=TINY_AUDIO_RATE, upsample_initial_channel=16, upsample_rates=[2, 2],
        upsample_kernel_sizes=[4, 4], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        normalize_before=False))
    pipeline = AudioLDM2Pipeline(
        vae=vae, text_encoder=clap, text_encoder_2=tiny_t5_encoder(len(tokenizer_2)), language_model=language_model,
        projection_model=AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=16, langauge_model_dim=16),
        tokenizer=tokenizer, tokenizer_2=tokenizer_2, feature_extractor=ClapFeatureExtractor(), unet=unet,
        scheduler=DDIMScheduler(clip_sample=False), vocoder=vocoder)
    pipeline.save_pretrained(folder)
    return folder


def tiny_cogvideox_pipeline(folder: Path) -> Path:
    """A CogVideoX-shaped pipeline of random weights (after diffusers' own fast tests): a one-layer 3D
    transformer over 2x2 latent patches reading 8 T5 tokens, and a 4-block causal video VAE (8x space,
    4x time: 9 frames of 16x16 from 3 latent frames)."""
    import torch
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline,
                           CogVideoXTransformer3DModel)

    tokenizer = tiny_t5_tokenizer(8)
    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=2, text_embed_dim=16,
        num_layers=1, sample_width=2, sample_height=2, sample_frames=9, patch_size=2, temporal_compression_ratio=4,
        max_text_seq_length=8)
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=4,
        layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4)
    pipeline = CogVideoXPipeline(tokenizer=tokenizer, text_encoder=tiny_t5_encoder(len(tokenizer)), vae=vae,
                                 transformer=transformer, scheduler=CogVideoXDDIMScheduler())
    pipeline.save_pretrained(folder)
    return folder


def tiny_flux_pipeline(folder: Path) -> Path:
    """A FLUX-shaped pipeline of random weights (after diffusers' own fast tests): CLIP and T5 text
    encoders, a one-block flux transformer, a one-block VAE."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer, tokenizer_2 = tiny_clip_tokenizer(folder), tiny_t5_tokenizer(256)
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                         pooled_projection_dim=16, axes_dims_rope=[4, 4, 8])
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16,
                                        projection_dim=16, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    vae = AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                        latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035)
    pipeline = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=clip, tokenizer=tokenizer,
                            text_encoder_2=tiny_t5_encoder(len(tokenizer_2)), tokenizer_2=tokenizer_2,
                            transformer=transformer)
    pipeline.save_pretrained(folder / "pipeline")
    return folder / "pipeline"


@needs_diffusers
def test_audioldm2_generator_writes_a_reproducible_wav_at_the_vocoders_rate(tmp_path):
    import numpy as np
    import soundfile

    directory = tiny_audioldm2_pipeline(tmp_path / "audioldm2")
    spec = f"audio=diffusers:{directory};steps=2;seconds=0.25;seed=3;device=cpu"
    generator = parse_generators(spec)[Modality.AUDIO]
    assert generator.describe() == {"name": f"diffusers:{directory}", "pipeline": "AudioLDM2Pipeline",
                                    "modality": "audio", "steps": 2, "seconds": 0.25, "guidance": 3.5, "seed": 3,
                                    "device": "cpu", "dtype": None, "sample_rate": TINY_AUDIO_RATE}
    first = generator.render("a dog barks twice", tmp_path / "a" / "x.wav")
    second = generator.render("a dog barks twice", tmp_path / "b" / "x.wav")
    info = soundfile.info(str(first))
    assert (info.format, info.subtype, info.channels) == ("WAV", "PCM_16", 1)
    assert info.samplerate == TINY_AUDIO_RATE and info.frames == int(0.25 * TINY_AUDIO_RATE)
    assert sha(first) == sha(second)  # the same seed draws the same audio, written as the same bytes
    assert b"PEAK" not in first.read_bytes()[:64]  # libsndfile's float-WAV chunk, which holds the time of writing
    samples, _ = soundfile.read(str(first), dtype="float32")
    assert np.isfinite(samples).all() and np.abs(samples).max() > 0
    reseeded = parse_generators(spec.replace("seed=3", "seed=4"))[Modality.AUDIO]
    other, _ = soundfile.read(str(reseeded.render("a dog barks twice", tmp_path / "c.wav")), dtype="float32")
    assert other.shape == samples.shape and not np.array_equal(other, samples)


@needs_diffusers
def test_cogvideox_generator_writes_a_reproducible_mp4(tmp_path):
    import av

    directory = tiny_cogvideox_pipeline(tmp_path / "cogvideox")
    generator = parse_generators(f"video=diffusers:{directory};steps=2;frames=9;height=16;width=16;device=cpu")[
        Modality.VIDEO]
    assert generator.describe() == {"name": f"diffusers:{directory}", "pipeline": "CogVideoXPipeline",
                                    "modality": "video", "steps": 2, "frames": 9, "guidance": 6.0, "seed": 42,
                                    "fps": 8, "height": 16, "width": 16, "max_sequence_length": 8,  # the transformer's
                                    "device": "cpu", "dtype": None}
    first = generator.render("a ball rolls to the left", tmp_path / "a" / "x.mp4")
    second = generator.render("a ball rolls to the left", tmp_path / "b" / "x.mp4")
    with av.open(str(first)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert (stream.codec_context.name, stream.average_rate) == ("h264", 8)
    assert len(frames) == 9 and frames[0].shape == (16, 16, 3)
    assert sha(first) == sha(second)  # the same seed draws the same video, encoded byte for byte the same
    assert len(load_video_frames(Part.of_file("video", first), 4)) == 4  # and the judges' decoder reads it


@needs_diffusers
def test_flux_pipeline_runs_with_the_schnell_settings(tmp_path):
    directory = tiny_flux_pipeline(tmp_path / "flux")
    generator = parse_generators(f"image=diffusers:{directory};size=16;device=cpu")[Modality.IMAGE]
    pipeline, calls = generator.pipeline(), []
    generator._pipeline = lambda prompt, **kwargs: calls.append(kwargs) or pipeline(prompt, **kwargs)
    first = generator.render("a red cat", tmp_path / "a.png")
    second = generator.render("a red cat", tmp_path / "b.png")
    assert load_image(Part.of_file("image", first)).size == (16, 16) and sha(first) == sha(second)
    assert {k: v for k, v in calls[0].items() if k != "generator"} == {
        "num_inference_steps": 4, "guidance_scale": 0.0, "max_sequence_length": 256, "height": 16, "width": 16}
    assert generator.describe()["steps"] == 4
