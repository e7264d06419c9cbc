"""align with media: a tiny random LLaVA samples through the hf backend and takes DPO steps on
image (and video-as-frames) pairs, with prompts rendered by the backend's InputProcessor."""
import json

import pytest

from eval_anything.align.config import DPOConfig, SampleConfig
from eval_anything.align.records import write_jsonl


@pytest.fixture
def image_files(tmp_path):
    from PIL import Image

    paths = []
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (40, 40), colour).save(path)
        paths.append(path)
    return paths


def test_multimodal_dpo_step_with_tiny_llava(tmp_path, tiny_llava_dir, image_files):
    import torch
    from safetensors.torch import load_file

    from eval_anything.align.train import train_dpo

    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, [{"id": f"m{i}", "prompt": "What colour is this?", "media": [{"modality": "image", "path": p.name}],
                         "chosen": name, "rejected": "green"} for i, (p, name) in enumerate(zip(image_files, ["red", "blue"]))])
    result = train_dpo(DPOConfig.from_dict({"model": str(tiny_llava_dir), "pairs": str(pairs),
                                            "output_dir": str(tmp_path / "dpo"), "max_steps": 2, "batch_size": 2,
                                            "learning_rate": 1e-3, "max_length": None}))
    assert len(result.losses) == 2 and result.losses[1] < result.losses[0]
    def weights(path):  # the fixture is saved in the published layout, a trained model in transformers' own
        return {k.replace("vision_tower.vision_model.", "vision_tower."): v for k, v in load_file(path).items()}

    before = weights(tiny_llava_dir / "model.safetensors")
    after = weights(result.model_dir / "model.safetensors")
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    assert any("vision" in k for k in changed) and any("language_model" in k for k in changed)
    # the trained checkpoint still loads through the hf backend, with its image processor
    from eval_anything.datamodel import GenerationConfig, Part, Request
    from eval_anything.models import ModelSpec, load_model

    model = load_model(ModelSpec("hf", str(result.model_dir)))
    (output,) = model.generate([Request("t", "s", 0, (Part.of_file("image", image_files[0]), Part.of_text("Colour?")),
                                        GenerationConfig(max_new_tokens=3))])
    assert output.error is None


def test_audio_dpo_step_with_tiny_qwen2_audio(tmp_path, tiny_qwen2_audio_dir):
    """Audio prompts train through the same InputProcessor.encode as evaluation (resampled to the
    feature extractor's rate, audio tokens counted by the processor)."""
    import numpy as np
    import soundfile
    import torch
    from safetensors.torch import load_file

    from eval_anything.align.train import train_dpo

    tone = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype("float32")
    soundfile.write(tmp_path / "beep.wav", tone, 8000)  # 8 kHz: resampled to 16 kHz on load
    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, [{"id": f"a{i}", "prompt": "How many beeps?", "media": [{"modality": "audio", "path": "beep.wav"}],
                         "chosen": "one", "rejected": "three"} for i in range(2)])
    result = train_dpo(DPOConfig.from_dict({"model": str(tiny_qwen2_audio_dir), "pairs": str(pairs),
                                            "output_dir": str(tmp_path / "dpo"), "max_steps": 2, "batch_size": 2,
                                            "learning_rate": 1e-3, "max_length": None}))
    assert len(result.losses) == 2 and result.losses[1] < result.losses[0]
    # the critic learns from audio prompts the same way (SFT through the same collator)
    from eval_anything.align.config import CriticSFTConfig
    from eval_anything.align.train import train_critic

    data = tmp_path / "llf.jsonl"
    write_jsonl(data, [{"id": f"c{i}", "prompt": "How many beeps?", "media": [{"modality": "audio", "path": "beep.wav"}],
                        "response": "three", "critique": "There is one beep, not three."} for i in range(2)])
    critic = train_critic(CriticSFTConfig.from_dict({"model": str(tiny_qwen2_audio_dir), "data": str(data),
                                                     "output_dir": str(tmp_path / "critic"), "max_steps": 2,
                                                     "batch_size": 2, "learning_rate": 1e-3}))
    assert critic.losses[1] < critic.losses[0]
    before = load_file(tiny_qwen2_audio_dir / "model.safetensors")
    after = load_file(result.model_dir / "model.safetensors")
    assert any("audio" in k and not torch.equal(before[k], after[k]) for k in before)


def test_media_records_with_a_text_only_model_stop_with_a_usage_error(tmp_path, tiny_llama_dir, smollm2_dir,
                                                                      image_files, capsys):
    """A text-only model given image pairs (dpo, rm) or audio prompts (ppo): exit 2, naming the file and what to do,
    not a traceback from inside the trainer, nor training that silently drops the media."""
    from tiny_models import make_tiny_llama_reward

    from eval_anything.cli import main

    pairs, prompts = tmp_path / "pairs.jsonl", tmp_path / "prompts.jsonl"
    write_jsonl(pairs, [{"id": "m0", "prompt": "What colour?", "media": [{"modality": "image", "path": image_files[0].name}],
                         "chosen": "red", "rejected": "green"}])
    write_jsonl(prompts, [{"id": "a0", "prompt": "How many beeps?", "media": [{"modality": "audio", "path": "beep.wav"}]}])
    assert main(["align", "dpo", "--model", str(tiny_llama_dir), "--pairs", str(pairs),
                 "--output-dir", str(tmp_path / "dpo"), "--max-steps", "1"]) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert f"{pairs} has image inputs (record 'm0')" in error and "train a model that takes image" in error
    assert "Traceback" not in error
    assert main(["align", "rm", "--model", str(tiny_llama_dir), "--pairs", str(pairs),
                 "--output-dir", str(tmp_path / "rm"), "--max-steps", "1"]) == 2
    assert f"rm: {pairs} has image inputs" in " ".join(capsys.readouterr().err.split())
    reward = make_tiny_llama_reward(tmp_path / "reward", smollm2_dir)
    assert main(["align", "ppo", "--model", str(tiny_llama_dir), "--reward-model", str(reward), "--prompts",
                 str(prompts), "--output-dir", str(tmp_path / "ppo"), "--max-steps", "1"]) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert f"{prompts} has audio inputs (record 'a0')" in error and "Qwen2-Audio" in error
    assert not (tmp_path / "ppo" / "model").exists()


def test_sample_stage_takes_images_through_the_hf_backend(tmp_path, tiny_llava_dir, image_files):
    from eval_anything.align.generate import run_sample

    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, [{"id": "a", "prompt": "Describe.", "media": [{"modality": "image", "path": str(image_files[0])}]},
                          {"id": "b", "prompt": "Describe.", "media": [{"modality": "image", "path": "missing.png"}]}])
    artifact = run_sample(SampleConfig.from_dict({"policy": str(tiny_llava_dir), "prompts": str(prompts),
                                                  "output_dir": str(tmp_path / "s"), "max_new_tokens": 3}))
    records = [json.loads(line) for line in artifact.records_path.read_text().splitlines()]
    assert [r["id"] for r in records] == ["a"] and records[0]["media"][0]["modality"] == "image"
    assert "missing.png" in artifact.manifest()["errors"]["b"]  # a bad file errors alone


def test_deepspeed_zero3_dpo_on_two_cpu_processes_through_accelerate_evaluates_in_the_loop(tmp_path, tiny_llama_dir):
    """The shipped accelerate ZeRO-3 config, 2 processes talking gloo (DeepSpeed's CPU accelerator), with in-loop
    evaluation: each rank gathers the whole model and evaluates its share (3 items: 2 and 1) into one run."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import torch
    from safetensors.torch import load_file

    from eval_anything.tasks import Catalog

    if shutil.which("g++") is None or shutil.which("ninja") is None:
        pytest.skip("DeepSpeed's CPU communication op is JIT-built and needs g++ and ninja")
    config = Path(__file__).resolve().parent.parent / "eval_anything" / "align" / "accelerate" / "zero3.yaml"
    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, [{"id": str(i), "prompt": f"{i}+{i}?", "chosen": str(2 * i), "rejected": str(2 * i + 1)}
                        for i in range(4)])
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "EVAL_ANYTHING_RANK_TIMEOUT_S": "60"}
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes", "2",
         "-m", "eval_anything", "align", "dpo", "--model", str(tiny_llama_dir), "--pairs", str(pairs),
         "--output-dir", str(tmp_path / "dpo"), "--max-steps", "2", "--batch-size", "1", "--learning-rate", "1e-3",
         "--max-length", "64", "--eval-every", "2", "--eval-limit", "3", "--eval-max-new-tokens", "3",
         "--eval-output-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "dpo" / "manifest.json").read_text())
    assert manifest["distributed"] == {"type": "DEEPSPEED", "processes": 2, "zero_stage": 3, "backend": "gloo"}
    assert manifest["global_step"] == 2
    before = load_file(tiny_llama_dir / "model.safetensors")
    after = load_file(tmp_path / "dpo" / "model" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = json.loads((run_dir / "manifest.json").read_text())
    assert run["status"] == "complete" and run["lineage"]["step"] == 2 and run["data_parallel"] == {"world_size": 2}
    ids = [json.loads(line)["id"] for line in (run_dir / "samples" / "arith_mini.jsonl").read_text().splitlines()]
    assert ids == [s.id for s in Catalog().tasks["arith_mini"].samples(3)]


def test_critic_sft_on_image_records_with_tiny_llava(tmp_path, tiny_llava_dir, image_files):
    from eval_anything.align.config import CriticSFTConfig
    from eval_anything.align.train import train_critic

    data = tmp_path / "llf.jsonl"
    write_jsonl(data, [{"id": f"c{i}", "prompt": "What colour is this?", "media": [{"modality": "image", "path": str(p)}],
                        "response": "green", "critique": f"Wrong: the picture is {name}.", "refinement": name}
                       for i, (p, name) in enumerate(zip(image_files, ["red", "blue"]))])
    result = train_critic(CriticSFTConfig.from_dict({"model": str(tiny_llava_dir), "data": str(data),
                                                     "output_dir": str(tmp_path / "critic"), "max_steps": 3,
                                                     "batch_size": 2, "learning_rate": 1e-3, "max_length": None}))
    assert len(result.losses) == 3 and result.losses[-1] < result.losses[0]


def test_lora_dpo_saves_a_merged_checkpoint(tmp_path, tiny_llama_dir):
    import torch
    from safetensors.torch import load_file

    from eval_anything.align.train import train_dpo

    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, [{"id": str(i), "prompt": f"{i}+{i}?", "chosen": str(2 * i), "rejected": "no"} for i in range(4)])
    result = train_dpo(DPOConfig.from_dict({"model": str(tiny_llama_dir), "pairs": str(pairs), "lora": True,
                                            "output_dir": str(tmp_path / "dpo"), "max_steps": 2, "learning_rate": 1e-2,
                                            "max_length": 64}))
    assert not (result.model_dir / "adapter_config.json").exists()
    before, after = load_file(tiny_llama_dir / "model.safetensors"), load_file(result.model_dir / "model.safetensors")
    assert set(before) == set(after)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)
