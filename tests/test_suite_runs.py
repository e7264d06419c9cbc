"""The all-modality suite end to end on replayed answers and a scripted judge server: selection,
instruction following per output modality, synergy and S_AMG computed from real task files,
with media that fail to decode recorded as errors and modalities nobody can render not applicable."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from eval_anything.models import ModelSpec, resolve_spec
from eval_anything.rundir import SampleLog
from eval_anything.runner import evaluate
from eval_anything.settings import JudgeSettings, RunSettings
from eval_anything.tasks import Catalog
from eval_anything.tasks.catalog import BUILTIN_DIR
from media_files import write_png, write_wav
from stub_openai import StubServer, completion, user_text

SUITE = BUILTIN_DIR / "suite"


def suite_task(folder: Path, name: str, data_file: str, rows: list[dict[str, Any]]) -> None:
    """The built-in task file `name`, renamed `test_NAME` and pointed at rows written here."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    text = (SUITE / f"{name}.yaml").read_text().replace(f"name: {name}\n", f"name: test_{name}\n", 1)
    (folder / f"{name}.yaml").write_text(text)
    (folder / "data" / data_file).write_text("".join(json.dumps(r) + "\n" for r in rows))


def judge_reply(call: int, body: dict[str, Any], auth: str):
    text = user_text(body)
    if "Score it on four criteria" in text:
        return 200, {}, completion("<Explanation>: [[fine]]\n<Score>: [[6]]"), 0.0
    if "Rate only how well the response follows" in text:
        return 200, {}, completion("<Explanation>: [[ok]]\n<Score>: [[8]]"), 0.0
    if "work together" in text:
        return 200, {}, completion("Explanation: they agree.\nRating: [[7]]"), 0.0
    if "answer the question about it" in text:
        return 200, {}, completion("[[A]]"), 0.0
    return 200, {}, completion("Explanation: matches.\nRating: [[9]]"), 0.0


VOTES = {"t": 0.1, "i": 0.0, "a": 0.0, "ti": 0.4, "ta": 0.1, "ia": 0.0, "tia": 0.4}
MCQ = [{"question": "Is there sound?", "choices": ["yes", "no"], "answer": "A"},
       {"question": "Is it silent?", "choices": ["yes", "no"], "answer": "B"}]


@pytest.fixture()
def suite(tmp_path):
    folder = tmp_path / "suite"
    media = tmp_path / "media"
    media.mkdir()
    selection = [{"instruction_uid": f"u{k}", "instruction": f"Explain topic {k}.", "selection": VOTES,
                  "votes_source": "illustrative", "questions_audio": MCQ} for k in range(4)]
    suite_task(folder, "amg", "amg_selection.jsonl", selection)
    suite_task(folder, "amg_modality_selection", "amg_selection.jsonl", selection)
    suite_task(folder, "amg_modality_synergy", "amg_selection.jsonl", selection)
    suite_task(folder, "amg_if_image", "amg_if_image.jsonl", [{"prompt_id": "p1", "prompt": "Draw a red square."},
                                                               {"prompt_id": "p2", "prompt": "Draw a cat."}])
    suite_task(folder, "amg_if_audio", "amg_if_audio.jsonl", [{"prompt_id": "a1", "prompt": "A beep.", "questions": MCQ}])
    suite_task(folder, "amg_if_video", "amg_if_video.jsonl", [{"prompt_id": "v1", "prompt": "A ball.", "questions": MCQ}])
    suite_task(folder, "amu_perception", "amu_perception.jsonl", [
        {"question_id": "amu1", "question": "How many beeps plus shapes?", "visual_path": str(write_png(media / "s.png")),
         "auditory_path": str(write_wav(media / "b.wav")), "visual_kind": "image", "auditory_kind": "sound",
         "evaluation_dimension": "perception", "answer": "3", "answer_type": "numeric",
         "annotations": [{"answer": "3", "keywords": {"visual": ["two squares"], "auditory": ["one beep"]}}]}])
    red, tone = write_png(media / "red.png"), write_wav(media / "tone.wav")
    corrupt = media / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot an image at all")
    tagged = lambda t, i, a: f"[[response]]: {t}\n[[image_instruction]]: {i}\n[[audio_instruction]]: {a}"
    answers = [
        # amg + selection: chose text+image (image made natively), text only, all three, a broken image
        *[{"task": f"test_{task}", "id": "u0", "text": tagged("Here.", "a diagram", "None"),
           "media": [{"modality": "image", "path": str(red)}]} for task in ("amg", "amg_modality_selection")],
        *[{"task": f"test_{task}", "id": "u1", "text": tagged("Only words.", "None", "None")}
          for task in ("amg", "amg_modality_selection")],
        *[{"task": f"test_{task}", "id": "u2", "text": tagged("All.", "a map", "a chime"),
           "media": [{"modality": "image", "path": str(red)}, {"modality": "audio", "path": str(tone)}]}
          for task in ("amg", "amg_modality_selection", "amg_modality_synergy")],
        *[{"task": f"test_{task}", "id": "u3", "text": tagged("Broken.", "a chart", "None"),
           "media": [{"modality": "image", "path": str(corrupt)}]} for task in ("amg", "amg_modality_selection")],
        {"task": "test_amg_modality_synergy", "id": "u0", "text": tagged("Here.", "a diagram", "None"),
         "media": [{"modality": "image", "path": str(red)}]},
        {"task": "test_amg_modality_synergy", "id": "u1", "text": tagged("Only words.", "None", "None")},
        {"task": "test_amg_modality_synergy", "id": "u3", "text": tagged("x", "None", "a hum")},
        {"task": "test_amg_if_image", "id": "p1", "text": tagged("None", "a red square", "None"),
         "media": [{"modality": "image", "path": str(red)}]},
        {"task": "test_amg_if_image", "id": "p2", "text": tagged("None", "a cat", "None")},
        {"task": "test_amg_if_audio", "id": "a1", "text": tagged("None", "None", "a beep"),
         "media": [{"modality": "audio", "path": str(tone)}]},
        {"task": "test_amg_if_video", "id": "v1", "text": "[[response]]: None\n[[video_instruction]]: a ball"},
        {"task": "test_amu_perception", "id": "amu1", "text": "There are 3."},
    ]
    predictions = tmp_path / "answers.jsonl"
    predictions.write_text("".join(json.dumps(a) + "\n" for a in answers))
    return folder, predictions


def run_suite(tmp_path, folder, predictions, tasks, protocol="extended"):
    """The suite under our extended protocol (test_paper_protocol.py checks the paper's)."""
    with StubServer(judge_reply) as server:
        spec = ModelSpec("openai", "stub-judge", {"base_url": server.base_url, "concurrency": 4})
        settings = RunSettings(output_dir=tmp_path / "runs", generators="",
                               judge=JudgeSettings(spec, cache_path=tmp_path / "cache.sqlite"))
        names = ",".join(f"test_{t}" for t in tasks.split(","))
        chosen = [task.under(protocol) for task in Catalog([folder]).resolve(names)]
        report = evaluate(resolve_spec(str(predictions)), chosen, settings)
        return report, server


def records(report, task):
    return {r["id"]: r for r in SampleLog(report.run_dir / "samples" / f"test_{task}.jsonl")}


def test_generation_side_scores_end_to_end(tmp_path, suite):
    folder, predictions = suite
    report, server = run_suite(tmp_path, folder, predictions,
                               "amg,amg_modality_selection,amg_modality_synergy,amg_if_image,amg_if_audio,amg_if_video")
    tasks = {name.removeprefix("test_"): result for name, result in report.results["tasks"].items()}

    selection = tasks["amg_modality_selection"]["metrics"]["modality_selection"]
    assert selection["value"] == pytest.approx((0.4 + 0.1 + 0.4 + 0.4) / 4)
    assert selection["chosen_vs_human"]["ti"] == {"chosen": 0.5, "human": 0.4}
    assert set(tasks["amg_modality_selection"]["breakdown"]) == {"t", "ti", "tia"}

    amg = records(report, "amg")
    s_t, s_i, s_a, s_syn = (8 - 1) / 9, 6 / 10, 1 / 2, (7 - 1) / 9  # IF text, image rubric, audio MCQ (A, A), synergy
    u0 = amg["u0"]["scores"]["amg_composite"]
    assert u0["value"] == pytest.approx(0.5 * 0.4 * (s_t + s_i) * s_syn)
    assert u0["details"]["S_i"] == pytest.approx({"t": s_t, "i": s_i}) and u0["details"]["alpha"] == {"ti": 0.4}
    assert amg["u1"]["scores"]["amg_composite"]["value"] == 0.0  # a single modality has no pair
    u2 = amg["u2"]["scores"]["amg_composite"]
    third = 0.4 / 3
    expected = 0.5 * third * ((s_t + s_i) * s_syn + (s_t + s_a) * s_syn + (s_i + s_a) * s_syn)
    assert u2["value"] == pytest.approx(expected) and set(u2["details"]["terms"]) == {"ti", "ta", "ia"}
    broken = amg["u3"]["scores"]["amg_composite"]
    assert broken["value"] is None and "broken.png" in broken["error"]  # corrupt media: an error, not a 0
    composite = tasks["amg"]["metrics"]["amg_composite"]
    assert composite["n"] == 3 and composite["errors"] == 1
    assert composite["value"] == pytest.approx((u0["value"] + 0.0 + u2["value"]) / 3)

    synergy = records(report, "amg_modality_synergy")
    assert synergy["u2"]["scores"]["amg_synergy"]["details"]["synergy"] == pytest.approx(
        {"ti": s_syn, "ta": s_syn, "ia": s_syn})
    assert synergy["u0"]["scores"]["amg_synergy"]["explanation"].endswith("not made: ta, ia")
    assert synergy["u1"]["scores"]["amg_synergy"]["not_applicable"].startswith("no generated image")

    image = records(report, "amg_if_image")
    assert image["p1"]["scores"]["judge_rating"]["value"] == pytest.approx(0.6)
    assert "no generator for image" in image["p2"]["scores"]["judge_rating"]["not_applicable"]
    assert tasks["amg_if_audio"]["metrics"]["judge_media_mcq"]["value"] == 0.5
    video = tasks["amg_if_video"]["metrics"]["judge_media_mcq"]
    assert video["n"] == 0 and video["not_applicable"]["count"] == 1 and "no generator for video" in \
        video["not_applicable"]["reasons"][0]
    images_seen = [b for b in server.bodies if "Score it on four criteria" in user_text(b)]
    assert all(any(p["type"] == "image_url" for p in b["messages"][-1]["content"]) for b in images_seen)


def test_amu_judged_with_references_objective_answer_beside_and_breakdown(tmp_path, suite):
    folder, predictions = suite
    report, server = run_suite(tmp_path, folder, predictions, "amu_perception")
    task = report.results["tasks"]["test_amu_perception"]
    assert task["metrics"]["judge_rating"]["value"] == 9 and task["metrics"]["objective_answer"]["value"] == 1.0
    assert task["breakdown"] == {"image+sound": {"judge_rating": {"value": 9.0, "n": 1},
                                                 "objective_answer": {"value": 1.0, "n": 1}}}
    content = server.bodies[0]["messages"][-1]["content"]
    assert {p["type"] for p in content} == {"image_url", "input_audio", "text"}  # both inputs reach the judge
    text = user_text(server.bodies[0])
    assert "visual keywords: two squares; auditory keywords: one beep" in text


needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng; .ci/run installs it)")


@needs_espeak
def test_espeak_renders_audio_instructions_that_the_judge_then_hears(tmp_path):
    import soundfile

    folder = tmp_path / "suite"
    suite_task(folder, "amg_if_audio", "amg_if_audio.jsonl", [{"prompt_id": "a1", "prompt": "Say hello.",
                                                                "questions": MCQ}])
    predictions = tmp_path / "answers.jsonl"
    predictions.write_text(json.dumps({"id": "a1", "text": "[[response]]: None\n[[audio_instruction]]: hello there"}))
    with StubServer(judge_reply) as server:
        spec = ModelSpec("openai", "stub-judge", {"base_url": server.base_url})
        settings = RunSettings(output_dir=tmp_path / "runs", generators="audio=espeak",
                               judge=JudgeSettings(spec, cache_path=None))
        report = evaluate(resolve_spec(str(predictions)),
                          [t.under("extended") for t in Catalog([folder]).resolve("test_amg_if_audio")], settings)
        assert all(any(p["type"] == "input_audio" for p in b["messages"][-1]["content"]) for b in server.bodies)
        assert server.calls == 2
    output = records(report, "amg_if_audio")["a1"]["outputs"][0]
    (audio,) = [p for p in output["parts"] if p["modality"] == "audio"]
    assert audio["metadata"] == {"generator": "espeak:en", "instruction": "hello there"}
    assert soundfile.info(audio["path"]).duration > 0.3 and Path(audio["path"]).is_relative_to(report.run_dir)
    assert output["metadata"]["rendered_by"] == {"audio": "espeak:en"} and output["metadata"]["chosen"] == "a"
    assert report.results["tasks"]["test_amg_if_audio"]["metrics"]["judge_media_mcq"]["value"] == 0.5
