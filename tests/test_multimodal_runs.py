"""Built-in multimodal tasks through the runner and the hf backend, on tiny random models with
real processors: media reach the model, modalities a model lacks are not applicable, and a
corrupt file errors alone while the run completes."""
import json
import shutil

import pytest

from eval_anything.models import ModelSpec
from eval_anything.rundir import SampleLog
from eval_anything.runner import evaluate
from eval_anything.settings import RunSettings
from eval_anything.tasks import Catalog

from tiny_models import LLAVA_IMAGE_TOKENS


@pytest.fixture(scope="module")
def catalog():
    return Catalog()


def run(model_dir, tasks, output_dir, limit=2):
    spec = ModelSpec("hf", str(model_dir), {"batch_size": 4})
    return evaluate(spec, tasks, RunSettings(output_dir=output_dir, limit=limit, max_new_tokens=4))


def records(report, task):
    return list(SampleLog(report.run_dir / "samples" / f"{task}.jsonl"))


def test_tiny_llava_on_image_and_video_tasks(tiny_llava_dir, catalog, tmp_path):
    tasks = catalog.resolve("shapes_color,motion_direction,tones_count")
    report = run(tiny_llava_dir, tasks, tmp_path)
    outcome = report.results["tasks"]
    assert outcome["shapes_color"]["status"] == "complete"
    assert outcome["shapes_color"]["counts"] == {"samples": 2, "scored": 2, "errored": 0}
    assert report.generated == 2 * 4 + 2  # circular: four orderings per colour item; two videos
    image_output = records(report, "shapes_color")[0]["outputs"][0]
    assert image_output["usage"]["input_tokens"] > LLAVA_IMAGE_TOKENS  # the image tokens are in the prompt
    video_record = records(report, "motion_direction")[0]
    assert video_record["outputs"][0]["metadata"] == {"video_as_frames": 8}
    assert video_record["outputs"][0]["usage"]["input_tokens"] > 8 * LLAVA_IMAGE_TOKENS
    assert outcome["tones_count"] == {**outcome["tones_count"], "status": "not_applicable",
                                      "reason": f"hf:{tiny_llava_dir} does not take audio input"}


def test_tiny_qwen2_audio_on_the_audio_task(tiny_qwen2_audio_dir, catalog, tmp_path):
    import soundfile

    report = run(tiny_qwen2_audio_dir, catalog.resolve("tones_count,shapes_count"), tmp_path, limit=4)
    tones = report.results["tasks"]["tones_count"]
    assert tones["status"] == "complete" and tones["counts"]["scored"] == 4
    # same prompt text, so prompt lengths differ only by audio tokens: 25 per second of audio
    text_tokens = set()
    for record in records(report, "tones_count"):
        seconds = soundfile.info(record["requests"][0]["input"][0]["path"]).duration
        text_tokens.add(record["outputs"][0]["usage"]["input_tokens"] - round(25 * seconds))
    assert max(text_tokens) - min(text_tokens) <= 1, text_tokens
    assert report.results["tasks"]["shapes_count"]["status"] == "not_applicable"


def test_corrupt_image_errors_alone_and_the_run_completes(tiny_llava_dir, catalog, tmp_path):
    source = catalog.tasks["shapes_count"]
    task_dir = tmp_path / "task"
    shutil.copytree(source.base_dir / "data" / "shapes", task_dir / "shapes")
    rows = [json.loads(line) for line in source.data_path.read_text().splitlines()[:4]]
    (task_dir / rows[1]["image"]).write_bytes(b"\x89PNG\r\n\x1a\nthis is no image")
    (task_dir / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (task_dir / "count.yaml").write_text(source.data_path.parent.parent.joinpath("shapes_count.yaml").read_text()
                                         .replace("name: shapes_count", "name: my_count")
                                         .replace("data/shapes_count.jsonl", "items.jsonl"))
    task = Catalog([task_dir]).tasks["my_count"]
    report = run(tiny_llava_dir, [task], tmp_path / "runs", limit=None)
    outcome = report.results["tasks"]["my_count"]
    assert outcome["status"] == "complete"
    assert outcome["counts"] == {"samples": 4, "scored": 3, "errored": 1}
    assert outcome["metrics"]["numeric"]["n"] == 3 and outcome["metrics"]["numeric"]["errors"] == 1
    bad = {r["id"]: r for r in records(report, "my_count")}[rows[1]["id"]]
    assert "cannot decode image" in bad["outputs"][0]["error"] and rows[1]["image"] in bad["outputs"][0]["error"]
    assert bad["scores"]["numeric"]["value"] is None
