"""The AMU tasks (an image or a video, an audio clip and a question in one prompt) through the hf
backend on a tiny random Qwen2.5-Omni thinker, judged by a scripted server: every sample is
generated from both media and scored, and the group score is computed."""
from __future__ import annotations

from typing import Any

import pytest
import soundfile

from eval_anything.models import ModelSpec
from eval_anything.models.hf import HFModel
from eval_anything.rundir import SampleLog
from eval_anything.runner import evaluate
from eval_anything.settings import JudgeSettings, RunSettings
from eval_anything.tasks import Catalog
from stub_openai import StubServer, completion
from tiny_models import OMNI_SPECIAL_TOKENS

AMU = ("amu_perception", "amu_reasoning", "amu_instruction_following", "amu_safety")
LIMIT = 2  # the first two items of each task: images with speech, sound or music, and one video
VIDEO_FRAMES = 8
AUDIO_TOKENS_PER_SECOND = 25


def judge(call: int, body: dict[str, Any], auth: str):
    return 200, {}, completion("Explanation: close to the references.\nRating: [[6]]"), 0.0


@pytest.fixture()
def encoded_batches(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What the processor handed to generate(), batch by batch."""
    batches: list[Any] = []
    encode = HFModel._encode

    def recording(self: HFModel, texts: list[str], prepared: list[Any]) -> Any:
        batches.append(encode(self, texts, prepared))
        return batches[-1]

    monkeypatch.setattr(HFModel, "_encode", recording)
    return batches


def run_amu(model_dir, tmp_path):
    with StubServer(judge) as server:
        judge_spec = ModelSpec("openai", "stub-judge", {"base_url": server.base_url, "concurrency": 4})
        settings = RunSettings(output_dir=tmp_path / "runs", limit=LIMIT, max_new_tokens=4, generators="",
                               judge=JudgeSettings(judge_spec, cache_path=tmp_path / "cache.sqlite"))
        report = evaluate(ModelSpec("hf", str(model_dir), {"batch_size": 4}), Catalog().resolve("amu"), settings)
        return report, server.calls


def per_prompt(batches: list[Any], token_id: int) -> list[int]:
    """How often `token_id` occurs in each prompt, smallest first."""
    return sorted(n for b in batches for n in (b["input_ids"] == token_id).sum(dim=1).tolist())


def test_amu_tasks_generate_from_image_and_audio_and_are_judged(tiny_qwen2_5_omni_dir, tmp_path, encoded_batches):
    from transformers import AutoTokenizer

    report, judge_calls = run_amu(tiny_qwen2_5_omni_dir, tmp_path)

    outcomes = report.results["tasks"]
    assert sorted(outcomes) == sorted(AMU)
    for name in AMU:
        assert outcomes[name]["status"] == "complete", outcomes[name]
        assert outcomes[name]["counts"] == {"samples": LIMIT, "scored": LIMIT, "errored": 0}
        assert outcomes[name]["metrics"]["judge_rating"]["value"] == pytest.approx(6)
    assert report.generated == judge_calls == len(AMU) * LIMIT
    assert report.results["groups"]["amu"]["status"] == "complete"
    assert report.results["groups"]["amu"]["value"] == pytest.approx(6)

    # every prompt carried pixels and audio features, with its image and audio tokens expanded
    for batch in encoded_batches:
        assert {"pixel_values", "image_grid_thw", "input_features", "feature_attention_mask"} <= set(batch)
        assert len(batch["input_features"]) == len(batch["input_ids"])  # one clip per prompt
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2_5_omni_dir)
    image_tokens = per_prompt(encoded_batches, tokenizer.convert_tokens_to_ids(OMNI_SPECIAL_TOKENS["image_token"]))
    audio_tokens = per_prompt(encoded_batches, tokenizer.convert_tokens_to_ids(OMNI_SPECIAL_TOKENS["audio_token"]))
    assert len(image_tokens) == len(audio_tokens) == len(AMU) * LIMIT
    assert min(image_tokens) >= 1
    records = [r for name in AMU for r in SampleLog(report.run_dir / "samples" / f"{name}.jsonl")]
    seconds = [soundfile.info(part["path"]).duration for r in records for part in r["requests"][0]["input"]
               if part["modality"] == "audio"]
    assert len(seconds) == len(audio_tokens)
    for tokens, expected in zip(audio_tokens, sorted(AUDIO_TOKENS_PER_SECOND * s for s in seconds)):
        assert abs(tokens - expected) <= 1, (audio_tokens, seconds)

    video = next(r for r in records if r["id"] == "amu-rea-02")["outputs"][0]
    assert video["error"] is None and video["metadata"] == {"video_as_frames": VIDEO_FRAMES}
    assert max(image_tokens) >= VIDEO_FRAMES  # the video's frames, each at least one token


def test_omni_processor_loads_and_saves_without_a_video_processor(tiny_qwen2_5_omni_dir, tmp_path):
    import transformers

    from eval_anything.datamodel import Modality
    from eval_anything.models.inputs import load_processor

    model = HFModel(ModelSpec("hf", str(tiny_qwen2_5_omni_dir), {}))
    assert model.input_modalities == {Modality.TEXT, Modality.IMAGE, Modality.VIDEO, Modality.AUDIO}
    assert model.describe()["model_class"] == "Qwen2_5OmniThinkerForConditionalGeneration"
    assert type(model.processor).__name__ == "Qwen2_5OmniProcessor" and model.processor.video_processor is None
    assert not model.inputs.native_video  # no torchvision: video goes in as frames
    model.processor.save_pretrained(tmp_path / "saved")  # as align does after training
    reloaded = load_processor(transformers, tmp_path / "saved")
    assert reloaded.to_dict() == model.processor.to_dict()
    assert reloaded.chat_template == model.processor.chat_template
