"""align RLHF with media: a score-head reward model trained on image (tiny LLaVA) and audio (tiny
Qwen2-Audio) preference pairs, then PPO on media prompts against it with a critic started from it, and
the `align grpo` (images) / `align rloo` (audio) stages through the same trainer — prompts and media
encoded by the hf backend's InputProcessor, as in evaluation and DPO."""
import json

import torch

from eval_anything.align.config import PPOConfig, RMConfig
from eval_anything.align.records import write_jsonl
from eval_anything.cli import main


def _rlhf_on_media(tmp_path, model_dir, medium, files, prompt, estimator, video=None):
    from safetensors.torch import load_file

    from eval_anything.align.metrics import read_metrics
    from eval_anything.align.ppo import train_ppo
    from eval_anything.align.train import train_reward_model
    from eval_anything.judges.reward_models import SCORE_HEAD_FILE

    media = [[{"modality": medium, "path": str(f)}] for f in files]
    write_jsonl(tmp_path / "pairs.jsonl", [{"id": f"p{i}", "prompt": prompt, "media": m, "chosen": "yes",
                                            "rejected": "no"} for i, m in enumerate(media)])
    write_jsonl(tmp_path / "prompts.jsonl", [{"id": f"q{i}", "prompt": prompt, "media": m} for i, m in enumerate(media)])
    if video is not None:  # the group estimator's run: one image prompt, one video prompt
        write_jsonl(tmp_path / "mixed.jsonl", [{"id": "q0", "prompt": prompt, "media": media[0]},
                                               {"id": "v", "prompt": prompt, "media": [{"modality": "video",
                                                                                        "path": str(video)}]}])
    rm = train_reward_model(RMConfig.from_dict({"model": str(model_dir), "pairs": str(tmp_path / "pairs.jsonl"),
                                                "output_dir": str(tmp_path / "rm"), "max_steps": 2, "batch_size": 2,
                                                "learning_rate": 1e-3, "max_length": None}))
    assert (rm.model_dir / SCORE_HEAD_FILE).exists() and rm.losses[1] < rm.losses[0]
    assert all("accuracy" in row and "margin" in row for row in read_metrics(tmp_path / "rm" / "metrics.jsonl"))
    before = load_file(next(model_dir.glob("*.safetensors")))
    group_prompts = tmp_path / ("mixed.jsonl" if video is not None else "prompts.jsonl")
    result = train_ppo(PPOConfig.from_dict({
        "model": str(model_dir), "reward_model": str(rm.model_dir), "prompts": str(tmp_path / "prompts.jsonl"),
        "output_dir": str(tmp_path / "ppo"), "max_steps": 1, "batch_size": 2, "response_length": 4,
        "ppo_epochs": 1, "learning_rate": 1e-3, "mini_batches": 2}))
    # the rloo / grpo stage as a user runs it: media prompts go through our trainer with that estimator
    assert main(["align", estimator, "--model", str(model_dir), "--reward-model", str(rm.model_dir),
                 "--prompts", str(group_prompts), "--output-dir", str(tmp_path / estimator), "--max-steps", "1",
                 "--batch-size", "4", "--num-generations", "2", "--max-completion-length", "4",
                 "--video-frames", "2", "--learning-rate", "1e-3"]) == 0
    group = json.loads((tmp_path / estimator / "manifest.json").read_text())
    assert group["stage"] == estimator and group["lineage"]["method"] == estimator
    ran_as = group["ran_as"]["config"]
    assert (ran_as["advantage_estimator"], ran_as["batch_size"], ran_as["num_generations"]) == (estimator, 2, 2)
    for history, folder in ((result.history, result.model_dir), (group["history"], tmp_path / estimator / "model")):
        (record,) = history
        assert record["entropy"] > 0 and ("vf_loss" in record) == (folder == result.model_dir)
        after = load_file(folder / "model.safetensors")
        assert any(k in before and not torch.equal(before[k], after[k]) for k in after)


def _write_mp4(path, frames=4, size=32):
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            pixels = np.full((size, size, 3), (i * 60) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_reward_model_ppo_and_grpo_on_images_and_video_with_tiny_llava(tmp_path, tiny_llava_dir):
    """Images (one per prompt, split into minibatches), then GRPO with a video prompt (frames as images:
    several feature rows for one prompt, one minibatch)."""
    from media_files import write_png

    files = [write_png(tmp_path / f"{i}.png", colour) for i, colour in enumerate([(255, 0, 0), (0, 0, 255)])]
    _rlhf_on_media(tmp_path, tiny_llava_dir, "image", files, "Is this red?", "grpo",
                   video=_write_mp4(tmp_path / "clip.mp4"))


def test_reward_model_ppo_and_rloo_on_audio_with_tiny_qwen2_audio(tmp_path, tiny_qwen2_audio_dir):
    from media_files import write_wav

    files = [write_wav(tmp_path / f"{i}.wav", hz=hz) for i, hz in enumerate([440.0, 880.0])]
    _rlhf_on_media(tmp_path, tiny_qwen2_audio_dir, "audio", files, "Is this a high tone?", "rloo")
