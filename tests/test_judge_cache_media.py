"""The judge cache keys media by modality and content: the same bytes at another path (another run
directory's generated media, a copy) reuse the judgement; different bytes are judged afresh."""
from __future__ import annotations

import json
import os
import shutil

from eval_anything.datamodel import Part
from eval_anything.judges.cache import media_key
from eval_anything.models import ModelSpec, resolve_spec
from eval_anything.runner import evaluate
from eval_anything.settings import JudgeSettings, RunSettings
from eval_anything.tasks import Catalog
from media_files import write_png
from stub_openai import StubServer
from test_suite_runs import judge_reply, suite_task


def test_media_key_is_content_and_modality(tmp_path):
    red = write_png(tmp_path / "red.png")
    copy = shutil.copy(red, tmp_path / "elsewhere.png")
    blue = write_png(tmp_path / "blue.png", colour=(0, 0, 255))
    key = media_key(Part.of_file("image", red))
    assert key == media_key(Part.of_file("image", copy)) == media_key(Part("image", data=red.read_bytes()))
    assert key != media_key(Part.of_file("image", blue)) and key != media_key(Part.of_file("video", red))
    assert "path" not in key
    blue.write_bytes(red.read_bytes())  # rewritten in place: hashed again, not remembered
    before = blue.stat().st_mtime_ns
    os.utime(blue, ns=(before, before + 10_000_000))  # file times can be coarser than two writes apart
    assert media_key(Part.of_file("image", blue)) == key
    assert media_key(Part.of_file("image", tmp_path / "missing.png"))["path"].endswith("missing.png")


def judge_image(tmp_path, image, output: str) -> int:
    """Judge one replayed answer whose image is `image`; the judge calls it took."""
    folder = tmp_path / "suite"
    suite_task(folder, "amg_if_image", "amg_if_image.jsonl", [{"prompt_id": "p1", "prompt": "Draw a red square."}])
    answers = tmp_path / f"{output}.jsonl"
    answers.write_text(json.dumps({"id": "p1", "text": "[[response]]: None\n[[image_instruction]]: a square",
                                   "media": [{"modality": "image", "path": str(image)}]}))
    with StubServer(judge_reply) as server:
        spec = ModelSpec("openai", "stub-judge", {"base_url": server.base_url})
        settings = RunSettings(output_dir=tmp_path / output, generators="",
                               judge=JudgeSettings(spec, cache_path=tmp_path / "cache.sqlite"))
        report = evaluate(resolve_spec(str(answers)),
                              [t.under("extended") for t in Catalog([folder]).resolve("test_amg_if_image")], settings)
        calls = server.calls
    assert report.results["tasks"]["test_amg_if_image"]["metrics"]["judge_rating"]["value"] == 0.6
    return calls


def test_same_media_bytes_at_another_path_hit_the_cache(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    red = write_png(tmp_path / "a" / "made.png")
    assert judge_image(tmp_path, red, "first") == 1
    assert judge_image(tmp_path, shutil.copy(red, tmp_path / "b" / "made.png"), "second") == 0
    assert judge_image(tmp_path, write_png(tmp_path / "b" / "other.png", colour=(0, 0, 255)), "third") == 1
