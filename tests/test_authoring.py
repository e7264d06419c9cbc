"""Task authoring without code: data files as tasks (inferred columns) and `validate-task`."""
import csv
import json
from pathlib import Path

import pytest

from eval_anything.cli import main
from eval_anything.tasks import Catalog, TaskFileError
from eval_anything.tasks.inference import infer_config
from eval_anything.validate import validate


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_images(folder: Path, colours) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, colour in enumerate(colours):
        Image.new("RGB", (32, 32), colour).save(folder / f"{i}.png")
        names.append(f"{folder.name}/{i}.png")
    return names


def test_inference_picks_columns_and_scorer(tmp_path):
    numeric = write_jsonl(tmp_path / "sums.jsonl", [{"id": "a", "prompt": "1+1?", "target": 2},
                                                    {"id": "b", "prompt": "2+2?", "target": "4"}])
    inferred = infer_config(numeric)
    assert inferred.data["input"] == [{"text": "prompt"}] and inferred.data["target"] == "target"
    assert inferred.data["scorers"] == ["numeric"] and inferred.data["id_field"] == "id"
    assert any("numeric" in note for note in inferred.notes)

    with (tmp_path / "mc.csv").open("w", newline="") as handle:  # CSV: choices as a JSON list in a cell
        writer = csv.DictWriter(handle, ["question", "options", "label", "audio_path"])
        writer.writeheader()
        writer.writerow({"question": "which?", "options": '["x", "y"]', "label": "B", "audio_path": "a.wav"})
    mc = infer_config(tmp_path / "mc.csv").data
    assert mc["scorers"] == ["multiple_choice"] and mc["choices"] == "options"
    assert mc["input"] == [{"audio": "audio_path"}] and "letters" in mc["prompt"]

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["capital of France?"], "answer": ["Paris"], "media": ["x.mp4"]}),
                   tmp_path / "cap.parquet")
    cap = infer_config(tmp_path / "cap.parquet").data
    assert cap["scorers"] == ["exact_match"] and cap["input"] == [{"media": "media"}, {"text": "text"}]
    assert "id_field" not in cap

    write_jsonl(tmp_path / "noanswer.jsonl", [{"question": "q"}])
    with pytest.raises(TaskFileError, match="which column is the answer"):
        infer_config(tmp_path / "noanswer.jsonl")


def test_data_file_in_tasks_resolves_and_says_what_it_inferred(tmp_path, capsys):
    path = write_jsonl(tmp_path / "my_items.jsonl", [{"question": "2+3?", "answer": "5"}])
    (task,) = Catalog().resolve(str(path))
    assert task.name == "my_items" and task.count() == 1
    err = capsys.readouterr().err
    assert "inferred task 'my_items'" in err and "scorer: numeric" in err


def test_zero_code_image_task_runs_end_to_end_on_tiny_llava(tiny_llava_dir, tmp_path, capsys):
    images = write_images(tmp_path / "media", ["red", "green", "blue"])
    rows = [{"id": f"q{i}", "question": "What colour is the picture?", "image": image, "answer": colour}
            for i, (image, colour) in enumerate(zip(images, ["red", "green", "blue"]))]
    data = write_jsonl(tmp_path / "colours.jsonl", rows)
    out = tmp_path / "runs"
    assert main(["run", "--model", f"hf:{tiny_llava_dir}", "--tasks", str(data), "--output-dir", str(out),
                 "--max-new-tokens", "4"]) == 0
    captured = capsys.readouterr()
    assert "image: 'image'" in captured.err and "scorer: exact_match" in captured.err
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    results = json.loads((run_dir / "results.json").read_text())
    task = results["tasks"]["colours"]
    assert task["status"] == "complete" and task["counts"] == {"samples": 3, "scored": 3, "errored": 0}
    record = json.loads((run_dir / "samples" / "colours.jsonl").read_text().splitlines()[0])
    image_part = record["requests"][0]["input"][0]
    assert image_part["modality"] == "image" and Path(image_part["path"]).resolve() == (tmp_path / images[0]).resolve()

    # exported and rerun from the bundle alone (the model folder is given again): identical scores
    archive = tmp_path / "colours.tar.gz"
    assert main(["export", str(run_dir), "-o", str(archive)]) == 0
    assert "not packed" in capsys.readouterr().out
    for image in images:
        (tmp_path / image).unlink()
    data.unlink()
    again = tmp_path / "again"
    assert main(["run", "--from", str(archive), "--model", f"hf:{tiny_llava_dir}", "--output-dir", str(again)]) == 0
    (rerun,) = [p for p in again.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert rerun.name == run_dir.name  # same model, task hash and settings (--max-new-tokens from the bundle)
    assert json.loads((rerun / "results.json").read_text())["tasks"]["colours"]["metrics"] == task["metrics"]
    texts = [[o["text"] for o in json.loads(line)["outputs"]] for line in
             (rerun / "samples" / "colours.jsonl").read_text().splitlines()]
    assert texts == [[o["text"] for o in json.loads(line)["outputs"]] for line in
                     (run_dir / "samples" / "colours.jsonl").read_text().splitlines()]


def test_url_media_is_refused_with_a_clear_message(tmp_path):
    write_jsonl(tmp_path / "web.jsonl", [{"question": "q", "image": "https://example.com/x.png", "answer": "a"}])
    (task,) = Catalog().resolve(str(tmp_path / "web.jsonl"))
    with pytest.raises(ValueError, match="row 1: column 'image' holds a URL"):
        list(task.samples())


BROKEN_TASK = """name: broken
version: 1
dataset: {path: broken.jsonl}
input: [{image: image}, {text: question}]
target: answer
prompt: "{{ question }} Hint: {{ hint }}"
scorers: [numeric, exact_matsh, {name: judge_rating, args: {template: no_such_rubric}}]
"""


@pytest.fixture
def broken_task(tmp_path):
    (tmp_path / "media").mkdir()
    write_images(tmp_path / "media", ["red"])
    (tmp_path / "media" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is no image")
    write_jsonl(tmp_path / "broken.jsonl", [
        {"id": "a", "question": "q", "image": "media/0.png", "answer": "3"},
        {"id": "a", "question": "q", "image": "media/0.png", "answer": "4"},         # duplicate id
        {"id": "c", "question": "q", "image": "media/missing.png", "answer": "5"},  # missing media
        {"id": "d", "question": "q", "image": "media/bad.png", "answer": "6"},      # undecodable
        {"id": "e", "question": "q", "image": "media/0.png", "answer": "seven"},    # not a number
        {"id": "f", "question": "q", "image": "http://x.org/1.png", "answer": "8"},  # URL
    ])
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN_TASK)
    return path


def test_validate_task_reports_every_planted_problem(broken_task, capsys):
    problems, _ = validate(str(broken_task))
    text = [str(p) for p in problems]

    def one(*needles):
        hits = [t for t in text if all(n in t for n in needles)]
        assert len(hits) == 1, (needles, text)
        return hits[0]

    one("scorers.1", "unknown scorer 'exact_matsh'", "did you mean 'exact_match'")
    one("scorers.2", "no rubric template 'no_such_rubric'")
    one("field 'prompt'", "template variable 'hint'", "rows 1, 2, 3, 4, 5, 6")
    one("broken.jsonl", "row 2, field 'id'", "duplicate id 'a'", "first at row 1")
    one("broken.jsonl", "row 3, field 'image'", "missing.png not found")
    one("broken.jsonl", "row 4, field 'image'", "cannot be decoded")
    one("broken.jsonl", "row 5, field 'answer'", "'seven' is not a number")
    one("broken.jsonl", "row 6, field 'image'", "URL")
    assert len(problems) == 8
    assert all(" -> " in t for t in text)  # each says what to do

    assert main(["validate-task", str(broken_task)]) == 1
    assert "8 problem(s)" in capsys.readouterr().err


def test_validate_task_clean_tasks_exit_0(tmp_path, capsys):
    assert main(["validate-task", "arith_mini"]) == 0
    assert main(["validate-task", "shapes_color"]) == 0
    images = write_images(tmp_path / "media", ["red"])
    data = write_jsonl(tmp_path / "ok.jsonl", [{"id": "x", "question": "colour?", "image": images[0], "answer": "red"}])
    assert main(["validate-task", str(data)]) == 0
    assert "ok (1 rows" in capsys.readouterr().out


def test_validate_task_schema_errors_are_all_reported(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"q": "x"}\n')
    (tmp_path / "t.yaml").write_text("name: t\nversion: 1\ndataset: {path: d.jsonl}\ninput: [{text: q}]\n"
                                     "promt: hi\nscorers: [nope]\n")
    problems, _ = validate(str(tmp_path / "t.yaml"))
    text = "\n".join(map(str, problems))
    assert "field 'promt'" in text and "unknown scorer 'nope'" in text


def test_a_task_that_fails_to_register_is_never_skipped(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("name: bad\nversion: 1\n")
    assert main(["list", "--include-path", str(tmp_path)]) == 2
    assert "bad.yaml" in capsys.readouterr().err
    assert main(["run", "--model", "replay:none.jsonl", "--tasks", "arith_mini", "--include-path", str(tmp_path),
                 "--output-dir", str(tmp_path / "runs")]) == 2
    assert main(["validate-task", "arith_mini", "--include-path", str(tmp_path)]) == 1


def test_every_built_in_task_validates_clean():
    catalog = Catalog()
    for name in catalog.tasks:
        problems, _ = validate(name, decode=False)
        assert problems == [], (name, [str(p) for p in problems])
