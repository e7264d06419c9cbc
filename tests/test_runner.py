"""The runner end to end on the replay backend: scoring, errors, durability and resume."""
import json

import pytest

from eval_anything.models import resolve_spec
from eval_anything.rundir import SampleLog
from eval_anything.runner import evaluate
from eval_anything.settings import RunSettings
from eval_anything.tasks import Catalog


@pytest.fixture(scope="module")
def catalog():
    return Catalog()


def write_predictions(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def arith_predictions(task, wrong=(), missing=(), errors=()):
    rows = []
    for sample in task.samples():
        if sample.id in missing:
            continue
        row = {"task": task.name, "id": sample.id, "text": f"It is {sample.target[0]}"}
        if sample.id in wrong:
            row["text"] = "It is 99999"
        if sample.id in errors:
            row = {"task": task.name, "id": sample.id, "error": "the model crashed"}
        rows.append(row)
    return rows


def run(tmp_path, predictions, tasks, catalog, **settings):
    spec = resolve_spec(str(predictions))
    return evaluate(spec, catalog.resolve(tasks), RunSettings(output_dir=tmp_path / "runs", **settings))


def test_replay_scores_and_records_errors_apart(tmp_path, catalog):
    task = catalog.tasks["arith_mini"]
    ids = [s.id for s in task.samples()]
    rows = arith_predictions(task, wrong=ids[:10], missing=ids[10:12], errors=ids[12:13])
    report = run(tmp_path, write_predictions(tmp_path / "p.jsonl", rows), "arith_mini", catalog)
    result = report.results["tasks"]["arith_mini"]
    metric = result["metrics"]["numeric"]
    assert result["counts"] == {"samples": 40, "scored": 37, "errored": 3}
    assert metric["n"] == 37 and metric["errors"] == 3
    assert metric["value"] == pytest.approx(27 / 37)
    records = {r["id"]: r for r in SampleLog(report.run_dir / "samples" / "arith_mini.jsonl")}
    assert "no prediction for task 'arith_mini', sample" in records[ids[10]]["scores"]["numeric"]["error"]
    assert "the model crashed" in records[ids[12]]["scores"]["numeric"]["error"]
    assert records[ids[0]]["requests"][0]["prompt"].endswith("Answer with the number only.")


def test_circular_choices_replayed_per_variant(tmp_path, catalog):
    task = catalog.tasks["shapes_color"]
    rows = []
    for index, sample in enumerate(task.samples()):
        for request in task.requests(sample, task.generation(0)):
            letter = "ABCD"[request.choices.index(sample.target[0])]
            if index == 0 and request.variant == 2:
                letter = "ABCD"[(request.choices.index(sample.target[0]) + 1) % 4]
            rows.append({"task": task.name, "id": sample.id, "variant": request.variant, "text": letter})
    report = run(tmp_path, write_predictions(tmp_path / "p.jsonl", rows), "shapes_color", catalog)
    metric = report.results["tasks"]["shapes_color"]["metrics"]["multiple_choice"]
    assert metric["n"] == 12 and metric["value"] == pytest.approx(11 / 12)
    assert report.generated == 48


def test_run_directory_is_self_describing(tmp_path, catalog):
    rows = arith_predictions(catalog.tasks["arith_mini"])
    report = run(tmp_path, write_predictions(tmp_path / "p.jsonl", rows), "arith_mini", catalog, limit=5, seed=7)
    manifest = json.loads((report.run_dir / "manifest.json").read_text())
    results = json.loads((report.run_dir / "results.json").read_text())
    assert manifest["format_version"] == 1 and manifest["status"] == "complete"
    assert manifest["settings"] == {"limit": 5, "seed": 7, "max_new_tokens": None}
    assert manifest["tasks"][0]["name"] == "arith_mini" and len(manifest["tasks"][0]["hash"]) == 64
    assert manifest["packages"]["eval-anything"]
    assert results["status"] == "complete" and results["tasks"]["arith_mini"]["counts"]["samples"] == 5


def test_rerunning_a_finished_run_makes_no_model_calls(tmp_path, catalog):
    predictions = write_predictions(tmp_path / "p.jsonl", arith_predictions(catalog.tasks["arith_mini"]))
    first = run(tmp_path, predictions, "arith_mini", catalog)
    second = run(tmp_path, predictions, "arith_mini", catalog)
    assert first.run_dir == second.run_dir
    assert (first.generated, second.generated) == (40, 0)
    assert second.results["tasks"] == first.results["tasks"]


def test_a_sample_logged_twice_counts_once_with_its_last_record(tmp_path, catalog):
    predictions = write_predictions(tmp_path / "p.jsonl", arith_predictions(catalog.tasks["arith_mini"]))
    first = run(tmp_path, predictions, "arith_mini", catalog)
    log_path = first.run_dir / "samples" / "arith_mini.jsonl"
    again = json.loads(log_path.read_text().splitlines()[0])
    again["scores"]["numeric"]["value"] = 0.0  # was right
    with log_path.open("a") as handle:
        handle.write(json.dumps(again) + "\n")
    second = run(tmp_path, predictions, "arith_mini", catalog)
    result = second.results["tasks"]["arith_mini"]
    assert result["counts"]["samples"] == 40
    assert result["metrics"]["numeric"]["value"] == pytest.approx(39 / 40)


def test_resume_after_a_torn_write_generates_only_the_rest(tmp_path, catalog):
    predictions = write_predictions(tmp_path / "p.jsonl", arith_predictions(catalog.tasks["arith_mini"]))
    first = run(tmp_path, predictions, "arith_mini", catalog)
    log_path = first.run_dir / "samples" / "arith_mini.jsonl"
    lines = log_path.read_text().splitlines(keepends=True)
    log_path.write_text("".join(lines[:15]) + lines[15][:40])  # a crash mid-line
    (first.run_dir / "results.json").unlink()
    resumed = run(tmp_path, predictions, "arith_mini", catalog)
    ids = [json.loads(line)["id"] for line in log_path.read_text().splitlines()]
    assert resumed.generated == 25 and resumed.resumed == {"arith_mini": 15}
    assert len(ids) == len(set(ids)) == 40
    assert resumed.results["tasks"] == first.results["tasks"]


def test_changed_settings_get_their_own_run_directory(tmp_path, catalog):
    predictions = write_predictions(tmp_path / "p.jsonl", arith_predictions(catalog.tasks["arith_mini"]))
    a = run(tmp_path, predictions, "arith_mini", catalog, limit=3)
    b = run(tmp_path, predictions, "arith_mini", catalog, limit=4)
    assert a.run_dir != b.run_dir and b.generated == 4


def test_replay_output_media_become_parts(tmp_path, catalog):
    (tmp_path / "out.png").write_bytes(b"not really a png")
    rows = [{"task": "arith_mini", "id": s.id, "text": s.target[0], "media": [{"modality": "image", "path": "out.png"}]}
            for s in catalog.tasks["arith_mini"].samples(limit=2)]
    report = run(tmp_path, write_predictions(tmp_path / "p.jsonl", rows), "arith_mini", catalog, limit=2)
    record = next(iter(SampleLog(report.run_dir / "samples" / "arith_mini.jsonl")))
    parts = record["outputs"][0]["parts"]
    assert [p["modality"] for p in parts] == ["text", "image"] and parts[1]["path"] == str(tmp_path / "out.png")


def test_bad_predictions_file_names_the_line(tmp_path, catalog):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "text": "1"}\n{"text": "no id"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2: each line needs an object with an 'id'"):
        run(tmp_path, path, "arith_mini", catalog)


def test_manifest_records_each_tasks_prompt_and_generation_settings(tmp_path, catalog):
    rows = arith_predictions(catalog.tasks["arith_mini"])
    report = run(tmp_path, write_predictions(tmp_path / "p.jsonl", rows), "arith_mini", catalog, limit=2)
    (task,) = json.loads((report.run_dir / "manifest.json").read_text())["tasks"]
    assert task["prompt"] == "{{ question }} Answer with the number only."
    assert task["generation"] == {"max_new_tokens": 16, "temperature": 0.0, "top_p": 1.0, "stop": ["\n"]}


def test_objects_from_before_a_run_are_frozen_only_while_it_runs(tmp_path, catalog, monkeypatch):
    import gc

    import eval_anything.runner as runner

    frozen_during = []
    real_run_task = runner._run_task

    def run_task(*args, **kwargs):
        frozen_during.append(gc.get_freeze_count())
        return real_run_task(*args, **kwargs)

    monkeypatch.setattr(runner, "_run_task", run_task)
    predictions = write_predictions(tmp_path / "p.jsonl", arith_predictions(catalog.tasks["arith_mini"]))
    assert gc.get_freeze_count() == 0
    run(tmp_path / "a", predictions, "arith_mini", catalog)
    assert frozen_during[0] > 1000 and gc.get_freeze_count() == 0  # thawed: old cyclic garbage stays collectable
    gc.freeze()  # a caller's own freeze is left as it was
    try:
        run(tmp_path / "b", predictions, "arith_mini", catalog)
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
